"""Cross-validated choice between ``stack``'s fitted model and the single-finder fallback.

A stacked logistic model has more freedom than one finder with one threshold, so its in-sample
validation F1 is optimistic; comparing it with a single finder's in-sample F1 favours it. Here
both are scored out of sample on the validation candidates:

1. **Folds grouped by validation catalogue** (each catalogue is one sky patch, so candidates of
   one sky, which share its noise, CMB and cluster population, are never split between
   training and scoring): leave one catalogue out when there are at least
   :data:`MIN_GROUPS` catalogues, else stratified :data:`N_FOLDS` folds of the candidates
   (fewer when a class has fewer members).
2. For each fold: the stacked model is fitted on the training folds
   (:func:`~clusterfw.plugins.combiners.stack.fit_logistic_c`, with the regularisation strength
   ``C`` that the fit on all validation candidates chose: one hyperparameter, not searched again
   per fold); every model's F1-best threshold is picked on the training folds; the held-out
   candidates are decided with that threshold.
3. The held-out decisions of all folds are pooled and counted once over the whole validation
   set (:meth:`ValidationSet.counts`, duplicates as calibrate counts them): each model's
   **CV F1**.

The models: ``stacked`` and, for each finder ``f``, ``single:f`` = ``f``'s score (its rank
percentile's logit, which orders candidates as the score does) on ``f``'s own detections when
the combined catalogues say which finder detected what (``f``'s own catalogue), else on every
merged candidate.

Rule (:data:`RULE`): keep the stacked model only if its CV F1 *exceeds* the best single finder's
CV F1 (a tie goes to the single finder, the simpler model) and its in-sample validation F1 is
not below that finder's (so the stored model is never below the best single finder on the
validation data either); otherwise the fallback is the single finder with the best CV F1.

The reference percentiles that make the features are not refitted per fold: they are a rank
transform of the pooled validation scores that uses no labels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from clusterfw.core.evaluation.calibration import ValidationSet
    from clusterfw.core.evaluation.metrics import Counts

MIN_GROUPS = 3
"""At least this many validation catalogues: leave-one-catalogue-out folds."""
N_FOLDS = 5
"""Stratified folds of the candidates when there are fewer catalogues."""
RULE = (
    "stacked kept only if its cross-validated F1 exceeds the best single finder's "
    "(ties: the single finder) and its validation F1 is not below that finder's; "
    "folds grouped by validation catalogue"
)
"""The decision rule, as stored in the calibration entry."""


@dataclass(frozen=True)
class Folds:
    """Held-out fold of every validation candidate.

    Attributes
    ----------
    fold : ndarray of int
        Per candidate, the fold it is held out in (0 .. ``n_folds - 1``).
    n_folds : int
    scheme : str
        ``"leave-one-catalogue-out"`` or ``"stratified-k-fold"``.
    n_true_out : ndarray of float or None
        True clusters of each fold's held-out skies (leave-one-catalogue-out with the per-sky
        counts known); None: estimated per fold (:func:`n_true_training`).
    """

    fold: np.ndarray
    n_folds: int
    scheme: str
    n_true_out: np.ndarray | None = None


def catalogue_of_candidates(validation: ValidationSet) -> np.ndarray | None:
    """Index of the catalogue (sky) of every pooled candidate; None when the tables do not add
    up to the pooled sample."""
    n = validation.sample.qhalo.size
    sizes = [t.num_rows for t in validation.tables]
    if not sizes or sum(sizes) != n:
        return None
    return np.repeat(np.arange(len(sizes)), sizes)


def make_folds(validation: ValidationSet, y: np.ndarray, seed: int = 0) -> Folds:
    """The folds of the module docstring's step 1.

    Parameters
    ----------
    validation : ValidationSet
    y : ndarray of bool
        Label per candidate (matched to a true cluster).
    seed : int
        Shuffling seed of the stratified folds.

    Returns
    -------
    Folds
    """
    y = np.asarray(y, dtype=bool)
    groups = catalogue_of_candidates(validation)
    if groups is not None and groups.max(initial=-1) + 1 >= MIN_GROUPS:
        n_groups = int(groups.max()) + 1
        per_table = validation.n_true_per_table
        n_true_out = np.asarray(per_table, dtype=np.float64) if len(per_table) == n_groups else None
        return Folds(groups.astype(np.int64), n_groups, "leave-one-catalogue-out", n_true_out)
    n_min = int(min(y.sum(), (~y).sum()))
    k = max(2, min(N_FOLDS, n_min))
    fold = np.zeros(y.size, dtype=np.int64)
    if n_min >= 2:
        from sklearn.model_selection import StratifiedKFold

        skf = StratifiedKFold(k, shuffle=True, random_state=seed)
        for i, (_, test) in enumerate(skf.split(np.zeros(y.size), y.astype(int))):
            fold[test] = i
    else:  # too few of a class to stratify: plain shuffled folds
        fold = np.random.default_rng(seed).permutation(y.size) % k
    return Folds(fold, k, "stratified-k-fold")


def n_true_training(validation: ValidationSet, train: np.ndarray, folds: Folds, k: int) -> int:
    """True clusters of the training folds of fold ``k``: the held-out skies' own counts when
    known; else the clusters matched by a training candidate plus the never-matched ones in
    proportion to the training candidates."""
    n_true = validation.sample.n_true
    if folds.n_true_out is not None:
        return int(round(n_true - folds.n_true_out[k]))
    q = validation.sample.qhalo
    matched_train = np.unique(q[train & (q >= 0)]).size
    never = n_true - np.unique(q[q >= 0]).size
    return int(round(matched_train + max(never, 0) * train.mean()))


def _best_threshold(values: np.ndarray, qhalo: np.ndarray, n_true: int, dup: str) -> float:
    from clusterfw.core.evaluation.metrics import threshold_curve

    curve = threshold_curve(
        values, qhalo, n_true, "ignore" if dup == "ignore" else "false_positive"
    )
    return curve.best_threshold()


@dataclass
class CVResult:
    """Out-of-fold scores of the candidate models.

    Attributes
    ----------
    f1 : dict of str to float
        ``{"stacked": F1, "single:a": F1, ...}`` (``stacked`` missing when a fold could not be
        fitted).
    counts : dict of str to Counts
    folds : Folds
    note : str
        Why ``stacked`` is missing, if it is.
    """

    f1: dict[str, float]
    counts: dict[str, Counts]
    folds: Folds
    note: str = ""

    def best_single(self, finders: Sequence[str]) -> str:
        """The finder with the highest CV F1 (the first in ``finders`` among ties)."""
        return max(finders, key=lambda f: (self.f1[f"single:{f}"], -list(finders).index(f)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "scheme": self.folds.scheme,
            "folds": int(self.folds.n_folds),
            "f1": {k: float(v) for k, v in self.f1.items()},
            "counts": {k: c.to_dict() for k, c in self.counts.items()},
            **({"note": self.note} if self.note else {}),
        }


def single_scores(
    x: np.ndarray, finders: Sequence[str], n_kinds: int, detected: Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Each finder alone: ``logit p_f`` from the feature matrix, ``-inf`` where ``f`` did not
    detect the candidate itself (when that is known)."""
    out = {}
    for i, f in enumerate(finders):
        k = i * n_kinds
        z = x[:, k] - x[:, k + 1]  # log p - log(1 - p)
        if detected is not None:
            z = np.where(np.asarray(detected[f], dtype=bool), z, -np.inf)
        out[f] = z
    return out


def cross_validate(
    validation: ValidationSet,
    x: np.ndarray,
    y: np.ndarray,
    finders: Sequence[str],
    fit: Callable[[np.ndarray, np.ndarray], Any],
    singles: Mapping[str, np.ndarray],
    seed: int = 0,
) -> CVResult:
    """CV F1 of the stacked model and of each finder alone (the module docstring's steps 2-3).

    Parameters
    ----------
    validation : ValidationSet
    x : ndarray, shape (n, k)
        The stacked model's features of the validation candidates.
    y : ndarray of bool
        Labels.
    finders : sequence of str
    fit : callable
        ``fit(x_train, y_train)`` returns a model with ``predict``; raises ValueError when it
        cannot fit (then ``stacked`` has no CV F1).
    singles : mapping of str to ndarray
        Each finder's score per candidate (:func:`single_scores`).
    seed : int

    Returns
    -------
    CVResult
    """
    y = np.asarray(y, dtype=bool)
    q = validation.sample.qhalo
    folds = make_folds(validation, y, seed)
    dup = validation.duplicates
    names = ["stacked"] + [f"single:{f}" for f in finders]
    positive = {name: np.zeros(y.size, dtype=bool) for name in names}
    note = ""
    for k in range(folds.n_folds):
        held = folds.fold == k
        train = ~held
        if not held.any():
            continue
        n_train = n_true_training(validation, train, folds, k)
        for f in finders:
            s = singles[f]
            t = _best_threshold(s[train], q[train], n_train, dup)
            positive[f"single:{f}"][held] = s[held] >= t
        if "stacked" not in positive:
            continue
        try:
            model = fit(x[train], y[train])
        except ValueError as exc:
            note = f"no stacked fit in fold {k + 1} of {folds.n_folds} ({exc})"
            del positive["stacked"]
            continue
        prob = model.predict(x)
        t = _best_threshold(prob[train], q[train], n_train, dup)
        positive["stacked"][held] = prob[held] >= t
    counts = {name: validation.counts(p) for name, p in positive.items()}
    f1 = {name: float(c.f1) if np.isfinite(c.f1) else 0.0 for name, c in counts.items()}
    return CVResult(f1, counts, folds, note)
