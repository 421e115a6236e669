"""Matching detections to true clusters, and F1 over score thresholds (per field, pooled)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Matched:
    """Detections of many fields matched to their truth.

    Attributes
    ----------
    score : numpy.ndarray
        ``(n_det,)`` detection scores.
    tp : numpy.ndarray
        ``(n_det,)`` bool: the detection is the best-scored one matched to a true cluster.
    truth_score : numpy.ndarray
        ``(n_true,)`` score of the detection matched to each true cluster (``-inf`` if none).
    offset : numpy.ndarray
        ``(n_true,)`` distance of that detection to the true centre (same unit as the radius).
    n_true : int
    """

    score: np.ndarray
    tp: np.ndarray
    truth_score: np.ndarray
    offset: np.ndarray

    @property
    def n_true(self) -> int:
        return int(self.truth_score.size)


def match_field(
    det_xy: np.ndarray, det_score: np.ndarray, true_xy: np.ndarray, radius: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching by decreasing score: each true cluster takes at most one detection.

    Parameters
    ----------
    det_xy : (n, 2) detection centres.
    det_score : (n,) scores.
    true_xy : (k, 2) true centres.
    radius : float or (k,) matching radius per true cluster (same unit as the positions).

    Returns
    -------
    tp : (n,) bool
    truth_score : (k,) score of the matched detection (``-inf`` when none)
    offset : (k,) distance to it (NaN when none)
    """
    n, k = len(det_score), len(true_xy)
    tp = np.zeros(n, bool)
    truth_score = np.full(k, -np.inf)
    offset = np.full(k, np.nan)
    if n == 0 or k == 0:
        return tp, truth_score, offset
    r = np.broadcast_to(np.asarray(radius, float), (k,))
    d = np.hypot(det_xy[:, None, 0] - true_xy[None, :, 0], det_xy[:, None, 1] - true_xy[None, :, 1])
    taken = np.zeros(k, bool)
    for i in np.argsort(-det_score, kind="stable"):
        ok = (~taken) & (d[i] <= r)
        if ok.any():
            j = int(np.argmin(np.where(ok, d[i], np.inf)))
            taken[j] = True
            tp[i] = True
            truth_score[j] = det_score[i]
            offset[j] = d[i, j]
    return tp, truth_score, offset


def pool(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> Matched:
    """Concatenate per-field ``(score, tp, truth_score, offset)``."""
    if not parts:
        e = np.zeros(0)
        return Matched(e, e.astype(bool), e, e)
    return Matched(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
    )


def f1_at(m: Matched, threshold: float) -> dict[str, float]:
    """Purity, completeness and F1 of the detections with score ≥ ``threshold``."""
    sel = m.score >= threshold
    n_det = int(sel.sum())
    tp = int((m.tp & sel).sum())
    found = int((m.truth_score >= threshold).sum())
    purity = tp / n_det if n_det else 0.0
    comp = found / m.n_true if m.n_true else 0.0
    f1 = 2 * purity * comp / (purity + comp) if purity + comp > 0 else 0.0
    return {
        "threshold": float(threshold),
        "purity": purity,
        "completeness": comp,
        "f1": f1,
        "n_det": n_det,
        "tp": tp,
        "fp": n_det - tp,
        "fn": m.n_true - found,
        "n_true": m.n_true,
    }


def best_f1(m: Matched) -> dict[str, float]:
    """The threshold (among the detection scores) with the highest F1."""
    if m.score.size == 0:
        return f1_at(m, np.inf)
    cands = np.unique(m.score)
    best = max((f1_at(m, float(t)) for t in cands), key=lambda r: (r["f1"], r["threshold"]))
    return best
