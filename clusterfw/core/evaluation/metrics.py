"""Purity, completeness, F1 and their curves, for candidate catalogues against truth.

Definitions (catalogue level)
-----------------------------
Candidates are matched to halos with :func:`~clusterfw.core.evaluation.matching.match_to_truth`
(largest halo within the radius). A *true cluster* is a halo with ``mass >= mass_min`` and
``z >= z_min``. At a threshold ``t`` the *positives* are the candidates with ``score >= t``
(NaN scores are never positive). Then

- ``TP(t)`` = number of true clusters matched by at least one positive;
- ``FP(t)`` = positives minus ``TP(t)``: unmatched candidates, candidates whose largest halo is
  not a true cluster, and duplicates (further candidates on an already-counted cluster);
  ``duplicates="ignore"`` removes duplicates from the positives instead;
- ``FN(t)`` = true clusters minus ``TP(t)``;
- purity ``TP / (TP + FP)``, completeness ``TP / (TP + FN)``,
  ``F1 = 2 TP / (2 TP + FP + FN)`` (DeepSZ eq. 1).

The *F1-best threshold* is the candidate score at which F1 peaks (the highest such score on
ties); applying it means ``score >= threshold``.

Cutout level (DeepSZ Table 1)
-----------------------------
:func:`cutout_confusion` grids the footprint into square cutouts. A cutout is *cluster-containing*
when a true cluster's centre lies in it. Following DeepSZ §2.3 (ii)-(iii), a candidate matched to a
true cluster is assigned to the cutout holding that cluster's centre, any other candidate to the
cutout holding its own position, and each cutout takes the largest score assigned to it (cutouts
with no candidate are negative at every threshold). This gives the four-cell confusion matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from clusterfw.core.evaluation.matching import (
    DEFAULT_MASS_MIN,
    DEFAULT_RADIUS_ARCMIN,
    DEFAULT_Z_MIN,
    MatchResult,
    Truth,
    halo_best_scores,
    match_to_truth,
    primary_mask,
)

Duplicates = Literal["false_positive", "ignore"]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


@dataclass(frozen=True)
class Counts:
    """Confusion counts of a catalogue-level decision, with the derived metrics."""

    tp: int
    fp: int
    fn: int

    @property
    def n_positive(self) -> int:
        """Number of positive candidates counted (``TP + FP``)."""
        return self.tp + self.fp

    @property
    def n_true(self) -> int:
        """Number of true clusters (``TP + FN``)."""
        return self.tp + self.fn

    @property
    def purity(self) -> float:
        """``TP / (TP + FP)`` (NaN with no positives)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def completeness(self) -> float:
        """``TP / (TP + FN)`` (NaN with no true clusters)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)``; 0 when there are no positives but some true clusters."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and metrics."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "n_positive": self.n_positive,
            "n_true": self.n_true,
            "purity": self.purity,
            "completeness": self.completeness,
            "f1": self.f1,
        }


def qualifying_halo(match: MatchResult, qualifies: np.ndarray) -> np.ndarray:
    """Per candidate: the index of its matched halo if that halo is a true cluster, else -1."""
    q = match.halo.copy()
    ok = q >= 0
    q[ok] = np.where(qualifies[q[ok]], q[ok], -1)
    return q


def counts_from_mask(
    positive: np.ndarray,
    qhalo: np.ndarray,
    n_true: int,
    duplicates: Duplicates = "false_positive",
) -> Counts:
    """Confusion counts of an arbitrary positive/negative decision per candidate.

    Parameters
    ----------
    positive : ndarray of bool
        The decision for each candidate.
    qhalo : ndarray of int
        Per candidate, the true cluster it is matched to or -1 (:func:`qualifying_halo`).
    n_true : int
        Number of true clusters in the footprint.
    duplicates : {"false_positive", "ignore"}
        How further positives on an already-counted true cluster are treated.
    """
    positive = np.asarray(positive, dtype=bool)
    qhalo = np.asarray(qhalo)
    hit = qhalo[positive & (qhalo >= 0)]
    tp = int(np.unique(hit).size)
    n_pos = int(positive.sum())
    fp = n_pos - tp if duplicates == "false_positive" else n_pos - hit.size
    return Counts(tp=tp, fp=int(fp), fn=int(n_true - tp))


@dataclass(frozen=True)
class ThresholdCurve:
    """Counts as a function of a threshold on one score (``score >= threshold`` is positive).

    Attributes
    ----------
    threshold : ndarray
        Distinct finite candidate scores, in decreasing order.
    tp, n_positive : ndarray of int
        True positives and positives at each threshold.
    n_true : int
        Number of true clusters.
    """

    threshold: np.ndarray
    tp: np.ndarray
    n_positive: np.ndarray
    n_true: int

    @property
    def fp(self) -> np.ndarray:
        """False positives at each threshold."""
        return self.n_positive - self.tp

    @property
    def purity(self) -> np.ndarray:
        """Purity at each threshold."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_positive > 0, self.tp / np.maximum(self.n_positive, 1), np.nan)

    @property
    def completeness(self) -> np.ndarray:
        """Completeness at each threshold."""
        if self.n_true == 0:
            return np.full(self.threshold.size, np.nan)
        return self.tp / self.n_true

    @property
    def f1(self) -> np.ndarray:
        """F1 at each threshold (``2 TP / (P + N_true)``)."""
        den = self.n_positive + self.n_true
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, 2.0 * self.tp / np.maximum(den, 1), np.nan)

    def best_index(self) -> int:
        """Index of the F1-best threshold (the highest threshold among ties); -1 if none."""
        if self.threshold.size == 0:
            return -1
        f1 = np.nan_to_num(self.f1, nan=-1.0)
        return int(np.argmax(f1))

    def best_threshold(self) -> float:
        """The threshold that maximises F1 (``inf`` when there are no candidates)."""
        i = self.best_index()
        return float(self.threshold[i]) if i >= 0 else float("inf")

    def counts_at(self, threshold: float) -> Counts:
        """Counts for ``score >= threshold``."""
        # thresholds are decreasing: the last index whose threshold is >= the cut
        k = int(np.searchsorted(-self.threshold, -threshold, side="right")) - 1
        if k < 0:
            return Counts(tp=0, fp=0, fn=self.n_true)
        tp = int(self.tp[k])
        return Counts(tp=tp, fp=int(self.n_positive[k] - tp), fn=self.n_true - tp)

    def best(self) -> tuple[float, Counts]:
        """The F1-best threshold and the counts there."""
        t = self.best_threshold()
        return t, self.counts_at(t)

    def to_dict(self, max_points: int = 400) -> dict[str, Any]:
        """JSON-ready curve, thinned to at most ``max_points`` thresholds (the best one kept)."""
        n = self.threshold.size
        idx = np.arange(n)
        if n > max_points:
            idx = np.unique(
                np.r_[
                    np.linspace(0, n - 1, max_points).round().astype(int), max(self.best_index(), 0)
                ]
            )
        return {
            "threshold": self.threshold[idx],
            "tp": self.tp[idx],
            "n_positive": self.n_positive[idx],
            "purity": self.purity[idx],
            "completeness": self.completeness[idx],
            "f1": self.f1[idx],
        }


def threshold_curve(
    scores: np.ndarray,
    qhalo: np.ndarray,
    n_true: int,
    duplicates: Duplicates = "false_positive",
) -> ThresholdCurve:
    """Purity, completeness and F1 at every distinct score used as a threshold.

    Parameters
    ----------
    scores : ndarray
        Candidate scores (higher = more cluster-like; NaN never positive).
    qhalo : ndarray of int
        Per candidate, the true cluster it matches or -1 (:func:`qualifying_halo`). Ids only need
        to be unique per true cluster (pooled samples offset them).
    n_true : int
        Number of true clusters.
    duplicates : {"false_positive", "ignore"}

    Returns
    -------
    ThresholdCurve
    """
    scores = np.asarray(scores, dtype=np.float64)
    qhalo = np.asarray(qhalo, dtype=np.int64)
    finite = np.isfinite(scores)
    s, q = scores[finite], qhalo[finite]
    prim = primary_mask(q, s)
    if duplicates == "ignore":
        keep = prim | (q < 0)
        s, q, prim = s[keep], q[keep], prim[keep]
    thresholds = np.unique(s)[::-1]
    neg_sorted = np.sort(-s)
    neg_tp_sorted = np.sort(-s[prim])
    n_pos = np.searchsorted(neg_sorted, -thresholds, side="right")
    tp = np.searchsorted(neg_tp_sorted, -thresholds, side="right")
    return ThresholdCurve(
        threshold=thresholds,
        tp=tp.astype(np.int64),
        n_positive=n_pos.astype(np.int64),
        n_true=int(n_true),
    )


@dataclass(frozen=True)
class Binned:
    """A fraction in bins (completeness in mass or redshift bins, purity in score bins)."""

    edges: np.ndarray
    n: np.ndarray
    k: np.ndarray
    label: str = ""

    @property
    def fraction(self) -> np.ndarray:
        """``k / n`` per bin (NaN for empty bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.k / np.maximum(self.n, 1), np.nan)

    @property
    def error(self) -> np.ndarray:
        """Binomial standard error ``sqrt(f (1 - f) / n)`` (NaN for empty bins)."""
        f = self.fraction
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(f * (1 - f) / np.where(self.n > 0, self.n, np.nan))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready bins."""
        return {
            "label": self.label,
            "edges": self.edges,
            "n": self.n,
            "k": self.k,
            "fraction": self.fraction,
            "error": self.error,
        }


def binned_fraction(
    values: np.ndarray, success: np.ndarray, edges: np.ndarray, label: str = ""
) -> Binned:
    """Count objects and successes in bins of ``values`` (right edge of the last bin included)."""
    values = np.asarray(values, dtype=np.float64)
    success = np.asarray(success, dtype=bool)
    n, _ = np.histogram(values, bins=edges)
    k, _ = np.histogram(values[success], bins=edges)
    return Binned(edges=np.asarray(edges, dtype=np.float64), n=n, k=k, label=label)


def default_mass_edges(mass: np.ndarray, mass_min: float, n_bins: int = 12) -> np.ndarray:
    """Logarithmic mass bins from ``mass_min / 4`` to the largest mass."""
    top = float(np.nanmax(mass)) * 1.0001 if np.size(mass) else mass_min * 10
    lo = mass_min / 4.0
    top = max(top, mass_min * 2.0)
    return np.geomspace(lo, top, n_bins + 1)


def default_z_edges(z: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Linear redshift bins from 0 to the largest redshift."""
    top = float(np.nanmax(z)) * 1.0001 if np.size(z) else 2.0
    return np.linspace(0.0, max(top, 0.1), n_bins + 1)


@dataclass
class Evaluation:
    """The evaluation of one score column of a catalogue against truth.

    Build with :func:`evaluate`. ``to_dict()`` gives the JSON written by ``clusterfw evaluate``.
    """

    score_column: str
    selection: dict[str, Any]
    n_candidates: int
    curve: ThresholdCurve
    threshold: float
    threshold_source: str
    at_threshold: Counts
    best_threshold: float
    best: Counts
    all_candidates: Counts
    completeness_vs_mass: Binned
    completeness_vs_mass_all_z: Binned
    completeness_vs_z: Binned
    purity_vs_score: Binned
    halo_mass: np.ndarray = field(repr=False)
    halo_z: np.ndarray = field(repr=False)
    halo_detected: np.ndarray = field(repr=False)
    is_cluster: Counts | None = None
    cutouts: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (curves thinned)."""
        out: dict[str, Any] = {
            "score_column": self.score_column,
            "n_candidates": self.n_candidates,
            "n_true": self.curve.n_true,
            "best_f1": {"threshold": self.best_threshold, **self.best.to_dict()},
            "at_threshold": {
                "threshold": self.threshold,
                "source": self.threshold_source,
                **self.at_threshold.to_dict(),
            },
            "all_candidates": self.all_candidates.to_dict(),
            "curve": self.curve.to_dict(),
            "completeness_vs_mass": self.completeness_vs_mass.to_dict(),
            "completeness_vs_mass_all_z": self.completeness_vs_mass_all_z.to_dict(),
            "completeness_vs_z": self.completeness_vs_z.to_dict(),
            "purity_vs_score": self.purity_vs_score.to_dict(),
        }
        if self.is_cluster is not None:
            out["is_cluster"] = self.is_cluster.to_dict()
        if self.cutouts is not None:
            out["cutouts"] = self.cutouts
        return out


def evaluate(
    candidates: Any,
    truth: Truth,
    *,
    score_column: str = "score",
    mass_min: float = DEFAULT_MASS_MIN,
    z_min: float = DEFAULT_Z_MIN,
    radius_arcmin: float = DEFAULT_RADIUS_ARCMIN,
    duplicates: Duplicates = "false_positive",
    threshold: float | None = None,
    mass_edges: np.ndarray | None = None,
    z_edges: np.ndarray | None = None,
    score_edges: np.ndarray | None = None,
    cutout_arcmin: float | None = None,
) -> Evaluation:
    """Evaluate one score column of a candidate catalogue against a truth halo catalogue.

    Parameters
    ----------
    candidates : pyarrow.Table or mapping
        Needs ``ra``, ``dec`` and ``score_column``; ``is_cluster`` is evaluated when present.
    truth : Truth
        All halos of the footprint the candidates were searched in.
    score_column : str
        Column used as the score (e.g. ``mf_score`` of a combined catalogue).
    mass_min, z_min : float
        Cuts defining a true cluster.
    radius_arcmin : float
        Matching radius.
    duplicates : {"false_positive", "ignore"}
    threshold : float, optional
        Threshold for the completeness curves, the mass-redshift map and ``at_threshold``;
        default: the F1-best threshold.
    mass_edges, z_edges, score_edges : ndarray, optional
        Bin edges (defaults: 12 log-mass bins from ``mass_min / 4``, 10 redshift bins from 0,
        12 score quantile bins).
    cutout_arcmin : float, optional
        Also compute the cutout-level confusion matrix with cutouts of this size.

    Returns
    -------
    Evaluation
    """
    from clusterfw.core.errors import SchemaError
    from clusterfw.core.evaluation.matching import as_columns

    cols = as_columns(candidates)
    for need in ("ra", "dec", score_column):
        if need not in cols:
            raise SchemaError(f"candidate catalogue has no column {need!r}")
    ra = np.asarray(cols["ra"], dtype=np.float64)
    dec = np.asarray(cols["dec"], dtype=np.float64)
    scores = np.asarray(
        [np.nan if v is None else v for v in cols[score_column]]
        if cols[score_column].dtype == object
        else cols[score_column],
        dtype=np.float64,
    )
    match = match_to_truth(ra, dec, truth, radius_arcmin)
    qual = truth.qualifies(mass_min, z_min)
    qhalo = qualifying_halo(match, qual)
    n_true = int(qual.sum())
    curve = threshold_curve(scores, qhalo, n_true, duplicates)
    best_t, best = curve.best()
    if threshold is None:
        thr, source = best_t, "f1_best"
    else:
        thr, source = float(threshold), "given"
    at = curve.counts_at(thr)
    all_c = counts_from_mask(np.isfinite(scores), qhalo, n_true, duplicates)

    halo_best = halo_best_scores(match, np.where(np.isfinite(scores), scores, -np.inf), len(truth))
    detected = halo_best >= thr
    if mass_edges is None:
        mass_edges = default_mass_edges(truth.mass, mass_min)
    if z_edges is None:
        z_edges = default_z_edges(truth.z)
    zsel = truth.z >= z_min
    msel = truth.mass >= mass_min
    c_mass = binned_fraction(
        truth.mass[zsel], detected[zsel], mass_edges, f"{truth.mass_col}, z >= {z_min:g}"
    )
    c_mass_all = binned_fraction(truth.mass, detected, mass_edges, f"{truth.mass_col}, all z")
    c_z = binned_fraction(
        truth.z[msel], detected[msel], z_edges, f"z, {truth.mass_col} >= {mass_min:.3g}"
    )
    fin = np.isfinite(scores)
    if score_edges is None:
        if fin.sum() >= 2:
            score_edges = np.unique(np.quantile(scores[fin], np.linspace(0, 1, 13)))
            if score_edges.size < 2:
                score_edges = np.array([score_edges[0] - 0.5, score_edges[0] + 0.5])
        else:
            score_edges = np.array([0.0, 1.0])
    prim = primary_mask(qhalo, np.where(fin, scores, -np.inf))
    good = prim if duplicates == "false_positive" else (qhalo >= 0)
    pur_score = binned_fraction(scores[fin], good[fin], score_edges, score_column)

    is_cl = None
    if "is_cluster" in cols:
        v = cols["is_cluster"]
        mask = np.array([bool(x) if x is not None and x == x else False for x in v], dtype=bool)
        is_cl = counts_from_mask(mask, qhalo, n_true, duplicates)
    cut = None
    if cutout_arcmin:
        cut = cutout_confusion(ra, dec, scores, qhalo, truth, qual, cutout_arcmin, thr)

    return Evaluation(
        score_column=score_column,
        selection={
            "mass_col": truth.mass_col,
            "mass_min": mass_min,
            "z_min": z_min,
            "radius_arcmin": radius_arcmin,
            "duplicates": duplicates,
        },
        n_candidates=int(ra.size),
        curve=curve,
        threshold=thr,
        threshold_source=source,
        at_threshold=at,
        best_threshold=best_t,
        best=best,
        all_candidates=all_c,
        completeness_vs_mass=c_mass,
        completeness_vs_mass_all_z=c_mass_all,
        completeness_vs_z=c_z,
        purity_vs_score=pur_score,
        halo_mass=truth.mass,
        halo_z=truth.z,
        halo_detected=detected,
        is_cluster=is_cl,
        cutouts=cut,
    )


def _flat_xy(
    ra: np.ndarray, dec: np.ndarray, ra_c: float, dec_c: float
) -> tuple[np.ndarray, np.ndarray]:
    dra = (np.asarray(ra) - ra_c + 180.0) % 360.0 - 180.0
    return dra * np.cos(np.deg2rad(dec_c)) * 60.0, (np.asarray(dec) - dec_c) * 60.0


def cutout_confusion(
    ra: np.ndarray,
    dec: np.ndarray,
    scores: np.ndarray,
    qhalo: np.ndarray,
    truth: Truth,
    qualifies: np.ndarray,
    cutout_arcmin: float,
    threshold: float,
    bounds: tuple[float, float, float, float] | None = None,
) -> dict[str, Any]:
    """The cutout-level confusion matrix of DeepSZ Table 1.

    Parameters
    ----------
    ra, dec, scores : ndarray
        Candidates.
    qhalo : ndarray of int
        Per candidate, the true cluster it matches or -1.
    truth : Truth
    qualifies : ndarray of bool
        True-cluster mask over ``truth``.
    cutout_arcmin : float
        Side of the square cutouts (DeepSZ labels the central 6 arcmin of each cutout).
    threshold : float
        A cutout is predicted cluster-containing when its score is ``>= threshold``.
    bounds : (ra_min, ra_max, dec_min, dec_max), optional
        Footprint; default: the extent of the truth catalogue. Cutouts tile it on a local flat
        projection (RA offsets scaled by the cosine of the central declination).

    Returns
    -------
    dict
        ``matrix`` (tp, fp, fn, tn), purity, completeness, F1, and the cutout-level F1-best
        threshold with its matrix.
    """
    if bounds is None:
        ra_c = float(np.rad2deg(np.angle(np.mean(np.exp(1j * np.deg2rad(truth.ra))))) % 360.0)
        dec_lo, dec_hi = float(truth.dec.min()), float(truth.dec.max())
        x_t, _ = _flat_xy(truth.ra, truth.dec, ra_c, 0.5 * (dec_lo + dec_hi))
        xmin, xmax = float(x_t.min()), float(x_t.max())
    else:
        r0, r1, dec_lo, dec_hi = bounds
        ra_c = (r0 + ((r1 - r0) % 360.0) / 2.0) % 360.0
        half = ((r1 - r0) % 360.0) / 2.0 * np.cos(np.deg2rad(0.5 * (dec_lo + dec_hi))) * 60.0
        xmin, xmax = -half, half
    dec_c = 0.5 * (dec_lo + dec_hi)
    ymin, ymax = (dec_lo - dec_c) * 60.0, (dec_hi - dec_c) * 60.0
    nx = max(1, int(np.ceil((xmax - xmin) / cutout_arcmin - 1e-9)))
    ny = max(1, int(np.ceil((ymax - ymin) / cutout_arcmin - 1e-9)))

    def cell(r: np.ndarray, d: np.ndarray) -> np.ndarray:
        x, y = _flat_xy(r, d, ra_c, dec_c)
        ix = np.floor((x - xmin) / cutout_arcmin).astype(np.int64)
        iy = np.floor((y - ymin) / cutout_arcmin).astype(np.int64)
        ix = np.where(np.isclose(x, xmax), nx - 1, ix)
        iy = np.where(np.isclose(y, ymax), ny - 1, iy)
        ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        return np.where(ok, iy * nx + ix, -1)

    n_cells = nx * ny
    label = np.zeros(n_cells, dtype=bool)
    tcell = cell(truth.ra[qualifies], truth.dec[qualifies])
    label[tcell[tcell >= 0]] = True
    halo_cell = np.full(truth.ra.size, -1, dtype=np.int64)
    halo_cell[qualifies] = tcell
    scores = np.asarray(scores, dtype=np.float64)
    ccell = np.where(qhalo >= 0, halo_cell[np.maximum(qhalo, 0)], cell(ra, dec))
    cscore = np.full(n_cells, -np.inf)
    ok = (ccell >= 0) & np.isfinite(scores)
    np.maximum.at(cscore, ccell[ok], scores[ok])

    def matrix(t: float) -> dict[str, Any]:
        pred = cscore >= t
        tp = int(np.sum(pred & label))
        fp = int(np.sum(pred & ~label))
        fn = int(np.sum(~pred & label))
        tn = int(n_cells - tp - fp - fn)
        c = Counts(tp=tp, fp=fp, fn=fn)
        return {
            "threshold": t,
            "matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
            "purity": c.purity,
            "completeness": c.completeness,
            "f1": c.f1,
        }

    has = np.isfinite(cscore)
    cell_q = np.where(label, np.arange(n_cells), -1)
    c_curve = threshold_curve(cscore[has], cell_q[has], int(label.sum()))
    return {
        "cutout_arcmin": cutout_arcmin,
        "n_cutouts": n_cells,
        "n_cluster_cutouts": int(label.sum()),
        "at_threshold": matrix(threshold),
        "best_f1": matrix(c_curve.best_threshold()),
    }


@dataclass
class MatchedSample:
    """Candidates of one or more validation skies, matched to truth, with named score columns.

    The unit that calibration pools over: ``qhalo`` ids are made unique across skies by
    :meth:`concat`.

    Attributes
    ----------
    qhalo : ndarray of int
        Per candidate, the true cluster it matches or -1.
    n_true : int
        Number of true clusters over all skies.
    scores : dict of str to ndarray
        Score columns, one value per candidate (NaN where missing).
    """

    qhalo: np.ndarray
    n_true: int
    scores: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.qhalo.size)

    @classmethod
    def from_catalogue(
        cls,
        candidates: Any,
        truth: Truth,
        score_columns: Sequence[str],
        *,
        mass_min: float = DEFAULT_MASS_MIN,
        z_min: float = DEFAULT_Z_MIN,
        radius_arcmin: float = DEFAULT_RADIUS_ARCMIN,
    ) -> MatchedSample:
        """Match a catalogue to truth and keep the named score columns."""
        from clusterfw.core.evaluation.matching import as_columns

        cols = as_columns(candidates)
        match = match_to_truth(cols["ra"], cols["dec"], truth, radius_arcmin)
        qual = truth.qualifies(mass_min, z_min)
        scores = {}
        for name in score_columns:
            v = cols[name]
            if v.dtype == object:
                v = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
            scores[name] = np.asarray(v, dtype=np.float64)
        return cls(qhalo=qualifying_halo(match, qual), n_true=int(qual.sum()), scores=scores)

    @staticmethod
    def concat(samples: Sequence[MatchedSample]) -> MatchedSample:
        """Pool samples of several skies (score columns present in all of them are kept)."""
        if not samples:
            raise ValueError("no samples")
        names = [n for n in samples[0].scores if all(n in s.scores for s in samples)]
        q, offset = [], 0
        for s in samples:
            q.append(np.where(s.qhalo >= 0, s.qhalo + offset, -1))
            offset += int(s.qhalo.max(initial=-1)) + 1
        return MatchedSample(
            qhalo=np.concatenate(q),
            n_true=sum(s.n_true for s in samples),
            scores={n: np.concatenate([s.scores[n] for s in samples]) for n in names},
        )

    def curve(self, name: str, duplicates: Duplicates = "false_positive") -> ThresholdCurve:
        """Threshold curve of one score column."""
        return threshold_curve(self.scores[name], self.qhalo, self.n_true, duplicates)

    def counts(self, positive: np.ndarray, duplicates: Duplicates = "false_positive") -> Counts:
        """Counts of an arbitrary decision."""
        return counts_from_mask(positive, self.qhalo, self.n_true, duplicates)


def and_grid_search(
    sample: MatchedSample,
    names: Sequence[str],
    *,
    n_grid: int | None = None,
    duplicates: Duplicates = "false_positive",
) -> tuple[dict[str, float], Counts]:
    """Thresholds, one per score column, maximising F1 of the AND decision.

    A candidate is positive when ``score_f >= t_f`` for every ``f`` (NaN fails, except against
    ``-inf``). Each column's grid holds ``-inf`` (the threshold "at its minimum": every candidate
    passes), the column's own F1-best threshold, and ``n_grid`` of its values at quantiles
    spaced uniformly and, towards the top, geometrically (``n_grid`` defaults to about
    ``2500 ** (1 / k)`` for ``k`` columns). Grid values are actual scores, so a threshold that
    ties another on the validation sample is never an arbitrary value between two scores. The
    full grid is searched, then once more on every distinct score between the best point's
    neighbours; ties go to the first point found (lowest thresholds first, the first column
    varying slowest).

    Returns
    -------
    thresholds : dict of str to float
        ``-inf`` means no cut.
    counts : Counts
        At the best thresholds.
    """
    k = len(names)
    if n_grid is None:
        n_grid = max(6, int(round(2500 ** (1.0 / max(k, 1)))))
    values = {n: np.nan_to_num(sample.scores[n], nan=-np.inf) for n in names}

    def search(grids: list[np.ndarray]) -> tuple[float, tuple[int, ...], Counts]:
        passes = [values[n][None, :] >= g[:, None] for n, g in zip(names, grids, strict=True)]
        best_f1, best_combo = -1.0, (0,) * k
        best_counts = sample.counts(np.ones(len(sample), dtype=bool), duplicates)
        for combo in np.ndindex(*[g.size for g in grids]):
            mask = passes[0][combo[0]].copy()
            for d in range(1, k):
                mask &= passes[d][combo[d]]
            c = sample.counts(mask, duplicates)
            f1 = c.f1 if np.isfinite(c.f1) else -1.0
            if f1 > best_f1 + 1e-12:
                best_f1, best_combo, best_counts = f1, combo, c
        return best_f1, best_combo, best_counts

    grids = []
    uniq = {}
    for name in names:
        v = np.unique(values[name][np.isfinite(values[name])])
        uniq[name] = v
        if v.size:
            half = max(n_grid // 2, 2)
            p = np.r_[np.linspace(0, 1, half), 1 - np.geomspace(0.5, 1.0 / v.size, half)]
            g = np.quantile(v, np.clip(p, 0, 1), method="inverted_cdf")
            own = sample.curve(name, duplicates).best_threshold()
            g = np.unique(np.r_[g, [own] if np.isfinite(own) else []])
        else:
            g = np.zeros(0)
        grids.append(np.r_[-np.inf, g])
    _, combo, counts = search(grids)
    fine = []
    for name, g, i in zip(names, grids, combo, strict=True):
        lo = g[i - 1] if i >= 1 else -np.inf
        hi = g[i + 1] if i + 1 < g.size else np.inf
        v = uniq[name]
        inner = v[(v > lo) & (v < hi)]
        if inner.size > n_grid:
            inner = inner[np.linspace(0, inner.size - 1, n_grid).round().astype(int)]
        fine.append(np.unique(np.r_[g[i], inner]))
    f1_fine, combo_fine, counts_fine = search(fine)
    if f1_fine > (counts.f1 if np.isfinite(counts.f1) else -1.0) + 1e-12:
        grids, combo, counts = fine, combo_fine, counts_fine
    thresholds = {n: float(g[i]) for n, g, i in zip(names, grids, combo, strict=True)}
    return thresholds, counts


def summary_table(results: Mapping[str, Counts]) -> str:
    """A plain-text table of purity / completeness / F1 per method (for reports)."""
    lines = [f"{'method':<28}{'TP':>6}{'FP':>6}{'FN':>6}{'purity':>9}{'compl.':>9}{'F1':>7}"]
    for name, c in results.items():
        lines.append(
            f"{name:<28}{c.tp:>6}{c.fp:>6}{c.fn:>6}{c.purity:>9.3f}{c.completeness:>9.3f}{c.f1:>7.3f}"
        )
    return "\n".join(lines)
