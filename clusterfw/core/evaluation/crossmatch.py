"""Cross-matching the candidates of several finders by position.

The rule
--------
Finders are taken in the order given (the order of the ``tables`` mapping a combiner receives).
The first finder's detections seed *groups*. Each later finder's detections join groups whose seed
position lies within ``radius_arcmin`` (default :data:`DEFAULT_CROSSMATCH_RADIUS_ARCMIN`, 1 arcmin,
DeepSZ's matching radius): pairs are taken greedily in increasing separation, at most one
detection per finder per group and one group per detection. A later finder's detections left
over that lie within the radius of an existing group (which already holds one of its
detections) are *merged* into the nearest such group rather than becoming candidates of their
own, since they would only duplicate it; when scores are given, the highest-scoring of a
finder's detections in a group represents it. Remaining detections seed new groups. A finder's
own detections are never merged with each other (its deblending is respected). A group is a
merged candidate; the result says, for every finder, which of its detections (if any) belongs
to it.

The matching is local: a group depends only on detections within a few radii of it, so a
candidate is grouped the same way whether a run covers one patch or several (away from the patch
borders, where a partner may lie in the other patch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from clusterfw.core.evaluation.matching import pairs_within

DEFAULT_CROSSMATCH_RADIUS_ARCMIN = 1.0


@dataclass(frozen=True)
class CrossMatch:
    """Groups of detections from several finders.

    Attributes
    ----------
    members : dict of str to ndarray of int
        For each finder, an array over groups: the index of its detection in the group, or -1.
    n_merged : ndarray of int
        Per group, the number of further detections merged into it (see the module docstring).
    seed_ra, seed_dec : ndarray
        Seed position of each group (degrees).
    radius_arcmin : float
    """

    members: dict[str, np.ndarray]
    n_merged: np.ndarray
    seed_ra: np.ndarray
    seed_dec: np.ndarray
    radius_arcmin: float

    def __len__(self) -> int:
        return int(self.seed_ra.size)

    def detected(self, finder: str) -> np.ndarray:
        """Boolean mask over groups: did ``finder`` detect it."""
        return self.members[finder] >= 0


def crossmatch(
    positions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    radius_arcmin: float = DEFAULT_CROSSMATCH_RADIUS_ARCMIN,
    scores: Mapping[str, np.ndarray] | None = None,
) -> CrossMatch:
    """Group detections of several finders lying within ``radius_arcmin`` of each other.

    Parameters
    ----------
    positions : mapping of str to (ra, dec)
        Detections of each finder, in degrees, in finder order.
    radius_arcmin : float
        Cross-match radius.
    scores : mapping of str to ndarray, optional
        Detection scores; when a group gets several detections of one finder, the
        highest-scoring one represents the finder (default: the nearest to the seed).

    Returns
    -------
    CrossMatch
    """
    seed_ra = np.zeros(0)
    seed_dec = np.zeros(0)
    members: dict[str, np.ndarray] = {}
    n_merged = np.zeros(0, dtype=np.int64)
    for name, (ra, dec) in positions.items():
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        n_groups = seed_ra.size
        mine = np.full(n_groups, -1, dtype=np.int64)
        taken = np.zeros(ra.size, dtype=bool)
        if n_groups and ra.size:
            i, g, sep = pairs_within(ra, dec, seed_ra, seed_dec, radius_arcmin)
            order = np.lexsort((g, i, sep))
            i, g = i[order], g[order]
            for a, b in zip(i, g, strict=True):
                if not taken[a] and mine[b] < 0:
                    taken[a] = True
                    mine[b] = a
            # leftovers within the radius of a group: merged into the nearest such group
            near = np.full(ra.size, -1, dtype=np.int64)
            by_det = np.lexsort((np.arange(i.size), i))  # stable: nearest first per detection
            i_s, g_s = i[by_det], g[by_det]
            first = np.ones(i_s.size, dtype=bool)
            first[1:] = i_s[1:] != i_s[:-1]
            near[i_s[first]] = g_s[first]
            merge = np.flatnonzero(~taken & (near >= 0))
            if scores is not None and merge.size:
                sc = np.asarray(scores[name], dtype=np.float64)
                for a in merge:  # keep the highest-scoring detection as the member
                    b = near[a]
                    if sc[a] > sc[mine[b]]:
                        mine[b] = a
            np.add.at(n_merged, near[merge], 1)
            taken[merge] = True
        new = np.flatnonzero(~taken)
        members = {k: np.r_[v, np.full(new.size, -1, dtype=np.int64)] for k, v in members.items()}
        members[name] = np.r_[mine, new].astype(np.int64)
        n_merged = np.r_[n_merged, np.zeros(new.size, dtype=np.int64)]
        seed_ra = np.r_[seed_ra, ra[new]]
        seed_dec = np.r_[seed_dec, dec[new]]
    return CrossMatch(
        members=members,
        n_merged=n_merged,
        seed_ra=seed_ra,
        seed_dec=seed_dec,
        radius_arcmin=float(radius_arcmin),
    )
