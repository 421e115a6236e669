"""Matching candidates to truth halos, and the truth catalogue itself.

The matching rule
-----------------
We follow DeepSZ (Lin et al. 2021, §2.3 step i): **each candidate is matched to the most massive
halo of the whole truth catalogue that lies within ``radius_arcmin`` (default 1 arcmin) of the
candidate's position** (great-circle separation, ``<=``; ties in mass go to the nearest halo).
The halo is chosen among *all* truth halos, whatever their mass or redshift; only afterwards do
the selection cuts (``mass >= mass_min`` and ``z >= z_min``) decide whether the matched halo is a
*true cluster*. A candidate whose largest neighbouring halo fails the cuts is therefore a false
positive even if a smaller qualifying halo happens to lie nearby: the largest halo dominates the
signal at that position.

Several candidates may match the same halo (many-to-one). At any threshold, a true cluster counts
once as a true positive, through its highest-scoring candidate; the other candidates matched to
it are *duplicates*, which count as false positives by default (the bijective correspondence that
DeepSZ assumes; ``duplicates="ignore"`` drops them from the counts instead). See
:mod:`clusterfw.core.evaluation.metrics`.

Positions are matched with a KD-tree on unit vectors (chord length ``2 sin(theta / 2)``), which is
exact on the sphere and fast for millions of halos.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_RADIUS_ARCMIN = 1.0
"""DeepSZ's matching radius (arcmin), chosen there to maximise the MF's performance."""

DEFAULT_MASS_COL = "mvir"  # DeepSZ: Mvir > 2e14 Msun, z > 0.25
DEFAULT_MASS_MIN = 2e14
"""Mass threshold of a true cluster (Msun), as in DeepSZ (there on M_vir; here on ``mass_col``)."""
DEFAULT_Z_MIN = 0.25
"""Redshift threshold of a true cluster, as in DeepSZ."""


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Cartesian unit vectors of positions given in degrees, shape ``(n, 3)``."""
    ra_r = np.deg2rad(np.asarray(ra, dtype=np.float64))
    dec_r = np.deg2rad(np.asarray(dec, dtype=np.float64))
    cos_dec = np.cos(dec_r)
    return np.column_stack([cos_dec * np.cos(ra_r), cos_dec * np.sin(ra_r), np.sin(dec_r)])


def chord(radius_arcmin: float) -> float:
    """Chord length on the unit sphere of an angle given in arcmin."""
    return float(2.0 * np.sin(np.deg2rad(radius_arcmin / 60.0) / 2.0))


def separation_arcmin(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray
) -> np.ndarray:
    """Great-circle separation in arcmin (element-wise, broadcasting)."""
    v1 = unit_vectors(np.ravel(ra1), np.ravel(dec1))
    v2 = unit_vectors(np.ravel(ra2), np.ravel(dec2))
    d = np.linalg.norm(v1 - v2, axis=1)
    return np.rad2deg(2.0 * np.arcsin(np.clip(d / 2.0, 0.0, 1.0))) * 60.0


def pairs_within(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray, radius_arcmin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``(i, j)`` with separation ``<= radius_arcmin`` between two position sets.

    Returns
    -------
    i, j : ndarray of int
        Indices into the first and second set.
    sep : ndarray of float
        Separations in arcmin.
    """
    from scipy.spatial import cKDTree

    n1, n2 = np.size(ra1), np.size(ra2)
    if n1 == 0 or n2 == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    v1 = unit_vectors(ra1, dec1)
    v2 = unit_vectors(ra2, dec2)
    tree = cKDTree(v2)
    # a hair above the chord so that separations equal to the radius are kept
    lists = tree.query_ball_point(v1, chord(radius_arcmin) * (1 + 1e-12) + 1e-15)
    counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=n1)
    i = np.repeat(np.arange(n1), counts)
    j = np.fromiter((k for x in lists for k in x), dtype=np.int64, count=int(counts.sum()))
    d = np.linalg.norm(v1[i] - v2[j], axis=1) if i.size else np.zeros(0)
    sep = np.rad2deg(2.0 * np.arcsin(np.clip(d / 2.0, 0.0, 1.0))) * 60.0
    keep = sep <= radius_arcmin * (1 + 1e-9)
    return i[keep], j[keep], sep[keep]


@dataclass(frozen=True)
class Truth:
    """A truth halo catalogue: positions, the mass used for the selection, redshift.

    Parameters
    ----------
    ra, dec : ndarray
        Positions in degrees.
    mass : ndarray
        Halo masses in Msun (the column named by ``mass_col``).
    z : ndarray
        Redshifts.
    mass_col : str
        Name of the mass column (recorded in outputs).
    columns : dict
        Every column of the source table, for plots and extra binning.
    """

    ra: np.ndarray
    dec: np.ndarray
    mass: np.ndarray
    z: np.ndarray
    mass_col: str = DEFAULT_MASS_COL
    columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.ra.size)

    def qualifies(
        self, mass_min: float = DEFAULT_MASS_MIN, z_min: float = DEFAULT_Z_MIN
    ) -> np.ndarray:
        """Boolean mask of *true clusters*: ``mass >= mass_min`` and ``z >= z_min``."""
        return (self.mass >= mass_min) & (self.z >= z_min)

    @classmethod
    def from_table(
        cls,
        table: Any,
        *,
        mass_col: str = DEFAULT_MASS_COL,
        z_col: str = "z",
        ra_col: str = "ra",
        dec_col: str = "dec",
        source: str = "truth",
    ) -> Truth:
        """Build from a pyarrow Table, a mapping of arrays, an astropy Table or a structured array.

        Raises
        ------
        clusterfw.core.errors.InputError
            When a needed column is missing (``source`` names the file).
        """
        from clusterfw.core.errors import InputError

        cols = as_columns(table)
        lower = {k.lower(): k for k in cols}

        def pick(name: str, *alternatives: str) -> np.ndarray:
            for cand in (name, *alternatives):
                if cand in cols:
                    return np.asarray(cols[cand], dtype=np.float64)
                if cand.lower() in lower:
                    return np.asarray(cols[lower[cand.lower()]], dtype=np.float64)
            raise InputError(
                source, f"truth catalogue has no column {name!r} (columns: {', '.join(cols)})"
            )

        z_alts = ("redshift",) if z_col == "z" else ()
        return cls(
            ra=pick(ra_col) % 360.0,
            dec=pick(dec_col),
            mass=pick(mass_col),
            z=pick(z_col, *z_alts),
            mass_col=mass_col,
            columns={k: np.asarray(v) for k, v in cols.items()},
        )


def as_columns(table: Any) -> dict[str, np.ndarray]:
    """Columns of a table-like object as a dict of numpy arrays.

    Accepts a :class:`pyarrow.Table`, a mapping of arrays, an astropy ``Table``, a pandas
    ``DataFrame`` or a numpy structured array.
    """
    if isinstance(table, Mapping):
        return {str(k): np.asarray(v) for k, v in table.items()}
    if hasattr(table, "column_names") and hasattr(table, "column"):  # pyarrow
        out = {}
        for name in table.column_names:
            col = table.column(name)
            try:
                out[name] = col.to_numpy(zero_copy_only=False)
            except Exception:  # dictionary or nested types
                out[name] = np.asarray(col.to_pylist(), dtype=object)
        return out
    if hasattr(table, "colnames"):  # astropy Table
        return {name: np.asarray(table[name]) for name in table.colnames}
    if hasattr(table, "columns") and hasattr(table, "to_numpy"):  # pandas
        return {str(name): np.asarray(table[name]) for name in table.columns}
    arr = np.asarray(table)
    if arr.dtype.names:
        return {name: arr[name] for name in arr.dtype.names}
    raise TypeError(f"cannot read columns from {type(table).__name__}")


@dataclass(frozen=True)
class MatchResult:
    """Candidate-to-halo matches.

    Attributes
    ----------
    halo : ndarray of int
        For each candidate, the index in the truth catalogue of the most massive halo within the
        radius, or -1.
    separation_arcmin : ndarray of float
        Separation to that halo (NaN when unmatched).
    n_within : ndarray of int
        Number of halos within the radius of each candidate.
    radius_arcmin : float
    """

    halo: np.ndarray
    separation_arcmin: np.ndarray
    n_within: np.ndarray
    radius_arcmin: float


def match_to_truth(
    ra: np.ndarray,
    dec: np.ndarray,
    truth: Truth,
    radius_arcmin: float = DEFAULT_RADIUS_ARCMIN,
) -> MatchResult:
    """Match each candidate to the most massive truth halo within ``radius_arcmin``.

    Parameters
    ----------
    ra, dec : array_like
        Candidate positions in degrees.
    truth : Truth
        All halos of the simulated sky (no mass cut applied here).
    radius_arcmin : float
        Matching radius; separations equal to the radius match.

    Returns
    -------
    MatchResult
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    n = ra.size
    halo = np.full(n, -1, dtype=np.int64)
    sep_out = np.full(n, np.nan)
    n_within = np.zeros(n, dtype=np.int64)
    i, j, sep = pairs_within(ra, dec, truth.ra, truth.dec, radius_arcmin)
    if i.size:
        n_within = np.bincount(i, minlength=n).astype(np.int64)
        # sort by candidate, then mass descending, then separation ascending: first of each group
        order = np.lexsort((sep, -truth.mass[j], i))
        i, j, sep = i[order], j[order], sep[order]
        first = np.ones(i.size, dtype=bool)
        first[1:] = i[1:] != i[:-1]
        halo[i[first]] = j[first]
        sep_out[i[first]] = sep[first]
    return MatchResult(
        halo=halo, separation_arcmin=sep_out, n_within=n_within, radius_arcmin=float(radius_arcmin)
    )


def halo_best_scores(match: MatchResult, scores: np.ndarray, n_halos: int) -> np.ndarray:
    """For every truth halo, the highest score of the candidates matched to it (-inf if none).

    A halo is *detected at threshold t* when this value is ``>= t``.
    """
    best = np.full(n_halos, -np.inf)
    ok = match.halo >= 0
    if np.any(ok):
        np.maximum.at(best, match.halo[ok], np.asarray(scores, dtype=np.float64)[ok])
    return best


def primary_mask(halo: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mark, for each matched halo, its highest-scoring candidate (ties: lowest index).

    Candidates with ``halo < 0`` are never primary.
    """
    halo = np.asarray(halo)
    scores = np.asarray(scores, dtype=np.float64)
    out = np.zeros(halo.size, dtype=bool)
    idx = np.flatnonzero(halo >= 0)
    if idx.size:
        order = np.lexsort((idx, -scores[idx], halo[idx]))
        sorted_idx = idx[order]
        h = halo[sorted_idx]
        first = np.ones(h.size, dtype=bool)
        first[1:] = h[1:] != h[:-1]
        out[sorted_idx[first]] = True
    return out


def read_truth(
    path: str | Path,
    *,
    mass_col: str = DEFAULT_MASS_COL,
    z_col: str = "z",
    ra_col: str = "ra",
    dec_col: str = "dec",
) -> Truth:
    """Read a truth halo catalogue (Parquet, FITS, CSV, ECSV, or ``.npz`` of arrays).

    Raises
    ------
    clusterfw.core.errors.InputError
        Missing or unreadable file, or a missing column.
    """
    from clusterfw.core.evaluation.io import read_table

    table = read_table(path)
    return Truth.from_table(
        table, mass_col=mass_col, z_col=z_col, ra_col=ra_col, dec_col=dec_col, source=str(path)
    )
