"""The ``stack`` combiner: a logistic model on per-finder rank percentiles, fitted on validation
catalogues by ``clusterfw calibrate``.

Features
--------
For every merged candidate and every finder ``f`` of the set (sorted by name), with ``p_f`` the
rank percentile of ``f``'s score under the calibration's reference ECDF (exactly as ``rankprod``
computes it, :func:`clusterfw.core.evaluation.calibration.percentile`):

- ``f:log_p`` = ``log p_f``;
- ``f:log_1mp`` = ``log(1 - p_f)`` (spreads the top tail, where clusters are);
- ``f:uncovered`` = 1 where ``f`` has no score for the candidate (its forced score is null/NaN:
  the finder has no data there), else 0. An uncovered finder's percentile is set to the floor;
- ``f:forced`` = 1 where ``f`` did not detect the candidate itself (its score is a forced score
  at another finder's position), else 0 (and 0 where that is unknown).

Models stored before ``f:forced`` existed (three features per finder) are still read and used
with their own features.

``p_f`` is clipped to ``[c_f, 1 - c_f]`` with ``c_f = 0.5 / n_f``, the floor of ``f``'s
reference (stored as ``clip``). ``score = sigmoid(w . x + b)`` is the model's probability that the
candidate is a true cluster (``score_kind`` ``probability``). With equal weights on the ``log_p``
features and nothing else, ``w . x = w log prod_f p_f``: the rank product of DeepSZ, of which
``stack`` is the generalisation.

Calibration (:meth:`StackCombiner.calibrate_set`)
-------------------------------------------------
On the pooled validation candidates of a finder set (label: matched to a true cluster):

1. features as above, standardised; scikit-learn ``LogisticRegressionCV`` (L2, ``lbfgs``),
   ``C`` chosen among :data:`CS` by stratified :data:`N_FOLDS`-fold cross-validation on log-loss;
   class weights :data:`CLASS_WEIGHT` (``None``: every candidate counts once, so ``score`` is a
   probability calibrated on the validation population; the imbalance between clusters and
   noise peaks is handled by the threshold, not the weights). The coefficients are mapped back
   to the raw features and stored as plain JSON (no pickle); the run time needs no scikit-learn.
2. ``threshold``: the F1-best threshold of the model's probability on validation.
3. **Stacked model or one finder alone, decided out of sample**
   (:mod:`clusterfw.plugins.combiners.stack_cv`): the stacked model and each finder alone (its
   own detections when the combined catalogues say which finder detected what: its own
   catalogue) are cross-validated on the validation candidates with folds grouped by
   validation catalogue (leave one catalogue out from three catalogues on, else stratified
   folds), thresholds picked on the training folds. The stacked model is kept only if its CV F1
   exceeds the best single finder's (a tie goes to the single finder) and its in-sample F1 is
   not below that finder's; else the stored model is the finder with the best CV F1 alone
   (*fallback*: a logistic model on ``logit p_f``, i.e. weights ``a`` on ``f:log_p`` and ``-a``
   on ``f:log_1mp``, and, when detections are known, :data:`FORCED_PENALTY` against
   ``f:forced``, so that only ``f``'s own detections can pass; ``model: "fallback"`` and a
   ``note`` say so), with its F1-best threshold.

The section is ``combiners.stack["a+b"]`` = ``{"model", "fallback_finder", "finders",
"feature_names", "coefficients", "intercept", "clip", "threshold", "metrics", "validation_f1",
"cv_f1", "cv", "fit", "note", "from"}`` (plus ``"rejected_stacked_model"`` after a fallback).
``clusterfw info calib.json`` prints it (:meth:`StackCombiner.describe_section`).

Without a model for its finder set (no ``--calibration``, or a calibration made before ``stack``
existed) ``stack`` still runs, with a warning: ``score = sigmoid(sum_f log p_f)`` (equal weights,
no intercept: the rank product in logistic form, ``P / (1 + P)``; it ranks candidates exactly as
``rankprod`` does, but is no calibrated probability) and ``is_cluster`` is null. That is what lets
``clusterfw run --combine stack`` make the validation catalogues that calibrate it.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import expit

from clusterfw.core.errors import InputError
from clusterfw.core.hookspecs import hookimpl
from clusterfw.plugins.combiners._base import PercentileCombiner, warn_uncalibrated
from clusterfw.plugins.combiners.stack_cv import RULE, cross_validate, single_scores

if TYPE_CHECKING:
    from clusterfw.core.evaluation.calibration import Calibration, ValidationSet

FEATURE_KINDS = ("log_p", "log_1mp", "uncovered", "forced")
"""Features per finder, in this order (see the module docstring)."""
LEGACY_FEATURE_KINDS = ("log_p", "log_1mp", "uncovered")
"""Features per finder of models stored before ``forced`` (still read)."""
FORCED_PENALTY = 1000.0
"""Log-odds a fallback model takes off candidates its finder did not detect: their probability
is 0 in float64, below every threshold (which is picked among the finder's own detections)."""
CLASS_WEIGHT: str | None = None
"""Class weights of the logistic fit: ``None``, every validation candidate weighs the same."""
CS = np.logspace(-4, 4, 17)
"""Inverse regularisation strengths tried by cross-validation."""
N_FOLDS = 5
"""Folds of the stratified cross-validation (fewer when a class has fewer members)."""
MIN_PER_CLASS = 2
"""Fewer true clusters (or false candidates) than this: no stacked fit, the fallback is used."""


def feature_names(finders: Sequence[str], kinds: Sequence[str] = FEATURE_KINDS) -> list[str]:
    """``["a:log_p", "a:log_1mp", "a:uncovered", "a:forced", "b:log_p", ...]`` for finders in
    this order (``kinds``: the features per finder)."""
    return [f"{f}:{k}" for f in finders for k in kinds]


def stack_features(
    percentiles: Mapping[str, np.ndarray],
    scores: Mapping[str, np.ndarray],
    finders: Sequence[str],
    clip: Mapping[str, float],
    detected: Mapping[str, np.ndarray] | None = None,
    kinds: Sequence[str] = FEATURE_KINDS,
) -> np.ndarray:
    """The feature matrix of :func:`feature_names` (one row per candidate).

    Parameters
    ----------
    percentiles : mapping of str to ndarray
        Each finder's rank percentile per candidate.
    scores : mapping of str to ndarray
        Each finder's raw score per candidate; NaN means "not covered".
    finders : sequence of str
        Finders in feature order.
    clip : mapping of str to float
        ``c_f``: percentiles are clipped to ``[c_f, 1 - c_f]``; uncovered ones set to ``c_f``.
    detected : mapping of str to ndarray, optional
        Whether each finder detected each candidate itself; None (or a finder missing): the
        ``forced`` feature is 0.
    kinds : sequence of str
        Features per finder (:data:`FEATURE_KINDS`, or :data:`LEGACY_FEATURE_KINDS`).

    Returns
    -------
    ndarray, shape (n, len(kinds) * len(finders))
    """
    cols = []
    for f in finders:
        c = float(clip[f])
        covered = np.isfinite(np.asarray(scores[f], dtype=np.float64))
        p = np.clip(np.asarray(percentiles[f], dtype=np.float64), c, 1.0 - c)
        p = np.where(covered, p, c)
        det = None if detected is None else detected.get(f)
        forced = (
            np.zeros(covered.shape)
            if det is None
            else (~np.asarray(det, dtype=bool)).astype(np.float64)
        )
        feats = {
            "log_p": np.log(p),
            "log_1mp": np.log1p(-p),
            "uncovered": (~covered).astype(np.float64),
            "forced": forced,
        }
        cols += [feats[k] for k in kinds]
    n = len(next(iter(scores.values()))) if scores else 0
    return np.column_stack(cols) if cols else np.zeros((n, 0))


@dataclass(frozen=True)
class LogisticModel:
    """A fitted logistic model in plain numbers: ``P = sigmoid(x . coefficients + intercept)``.

    Attributes
    ----------
    feature_names : tuple of str
    coefficients : ndarray
        One per feature, on the raw (unstandardised) features.
    intercept : float
    """

    feature_names: tuple[str, ...]
    coefficients: np.ndarray
    intercept: float

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """``x . coefficients + intercept`` (the log-odds)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.coefficients.size:
            raise ValueError(f"{x.shape} features for a model of {self.coefficients.size}")
        return x @ self.coefficients + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The probability ``sigmoid(log-odds)``, computed directly (no scikit-learn)."""
        return np.asarray(expit(self.decision_function(x)), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (full float precision)."""
        return {
            "feature_names": list(self.feature_names),
            "coefficients": [float(c) for c in self.coefficients],
            "intercept": float(self.intercept),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LogisticModel:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            When names and coefficients differ in length or a number is not finite.
        """
        names = tuple(str(n) for n in d["feature_names"])
        coef = np.asarray(d["coefficients"], dtype=np.float64)
        b = float(d["intercept"])
        if coef.ndim != 1 or coef.size != len(names):
            raise ValueError(f"{coef.size} coefficients for {len(names)} features")
        if not (np.all(np.isfinite(coef)) and math.isfinite(b)):
            raise ValueError("coefficients and intercept must be finite numbers")
        return cls(names, coef, b)

    def weights(self) -> dict[str, float]:
        """``{feature name: coefficient}``."""
        return {n: float(c) for n, c in zip(self.feature_names, self.coefficients, strict=True)}


def _standardised(
    x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x`` (float64), ``y`` (bool) and the standardisation ``mean``, ``scale`` of ``x`` (1 for
    constant features); ValueError when a class has fewer than :data:`MIN_PER_CLASS` members."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    if min(y.sum(), (~y).sum()) < MIN_PER_CLASS:
        raise ValueError(f"{int(y.sum())} positives and {int((~y).sum())} negatives")
    scale = x.std(axis=0)
    return x, y, x.mean(axis=0), np.where(scale > 0, scale, 1.0)


def _sklearn_cv(n_folds: int, class_weight: str | None, cs: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    kwargs: dict[str, Any] = {}
    params = inspect.signature(LogisticRegressionCV).parameters
    if "use_legacy_attributes" in params:  # scikit-learn >= 1.8: L2 spelled as l1_ratio 0
        kwargs = {"l1_ratios": (0.0,), "use_legacy_attributes": False}
    return LogisticRegressionCV(
        Cs=list(cs),
        cv=StratifiedKFold(n_folds, shuffle=True, random_state=0),
        scoring="neg_log_loss",
        class_weight=class_weight,
        max_iter=5000,
        **kwargs,
    )


def fit_sklearn(
    x: np.ndarray,
    y: np.ndarray,
    *,
    class_weight: str | None = CLASS_WEIGHT,
    cs: np.ndarray = CS,
    n_folds: int = N_FOLDS,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Fit ``LogisticRegressionCV`` on standardised features.

    Returns
    -------
    estimator : sklearn.linear_model.LogisticRegressionCV
        Fitted on ``(x - mean) / scale``.
    mean, scale : ndarray
        The standardisation (``scale`` is 1 for constant features).

    Raises
    ------
    ValueError
        When a class has fewer than :data:`MIN_PER_CLASS` members.
    """
    x, y, mean, scale = _standardised(x, y)
    n_min = int(min(y.sum(), (~y).sum()))
    est = _sklearn_cv(min(n_folds, n_min), class_weight, cs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # convergence chatter at extreme C
        est.fit((x - mean) / scale, y.astype(int))
    return est, mean, scale


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    class_weight: str | None = CLASS_WEIGHT,
    cs: np.ndarray = CS,
    n_folds: int = N_FOLDS,
) -> tuple[LogisticModel, dict[str, Any]]:
    """A :class:`LogisticModel` on raw features, regularisation chosen by cross-validation.

    Parameters
    ----------
    x : ndarray, shape (n, k)
    y : ndarray of bool, shape (n,)
    names : sequence of str
        ``k`` feature names.
    class_weight, cs, n_folds
        Passed to ``LogisticRegressionCV`` (see :data:`CLASS_WEIGHT`, :data:`CS`,
        :data:`N_FOLDS`).

    Returns
    -------
    model : LogisticModel
        ``predict`` equals the fitted estimator's ``predict_proba(...)[:, 1]``.
    info : dict
        ``C`` chosen, ``folds``, ``scoring``, ``class_weight``, ``n``, ``n_positive``.
    """
    est, mean, scale = fit_sklearn(x, y, class_weight=class_weight, cs=cs, n_folds=n_folds)
    w_std = np.asarray(est.coef_, dtype=np.float64).ravel()
    coef = w_std / scale
    b = float(np.ravel(est.intercept_)[0] - np.sum(w_std * mean / scale))
    y = np.asarray(y, dtype=bool)
    info = {
        "C": float(np.ravel(est.C_)[0]),
        "folds": int(est.cv.get_n_splits()),
        "scoring": "neg_log_loss",
        "class_weight": "none" if class_weight is None else str(class_weight),
        "n": int(y.size),
        "n_positive": int(y.sum()),
    }
    return LogisticModel(tuple(names), coef, b), info


def fit_logistic_c(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    c: float,
    *,
    class_weight: str | None = CLASS_WEIGHT,
) -> LogisticModel:
    """:func:`fit_logistic` with a given inverse regularisation strength ``c`` (no search): the
    fits of the cross-validation folds (:mod:`~clusterfw.plugins.combiners.stack_cv`), which
    reuse the ``C`` chosen on all validation candidates.

    Raises
    ------
    ValueError
        When a class has fewer than :data:`MIN_PER_CLASS` members.
    """
    from sklearn.linear_model import LogisticRegression

    x, y, mean, scale = _standardised(x, y)
    est = LogisticRegression(C=c, class_weight=class_weight, max_iter=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        est.fit((x - mean) / scale, y.astype(int))
    w_std = np.asarray(est.coef_, dtype=np.float64).ravel()
    b = float(np.ravel(est.intercept_)[0] - np.sum(w_std * mean / scale))
    return LogisticModel(tuple(names), w_std / scale, b)


def default_model(finders: Sequence[str]) -> LogisticModel:
    """Equal weights 1 on every ``log_p``, 0 elsewhere, no intercept: ``P / (1 + P)`` with ``P``
    the rank product."""
    names = feature_names(finders)
    coef = np.array([1.0 if n.endswith(":log_p") else 0.0 for n in names])
    return LogisticModel(tuple(names), coef, 0.0)


@dataclass(frozen=True)
class StackEntry:
    """One finder set's entry of the ``stack`` section, parsed.

    Attributes
    ----------
    finders : tuple of str
        Sorted finder names (feature order).
    model : LogisticModel
    clip : dict of str to float
    threshold : float or None
    kind : str
        ``"stacked"`` or ``"fallback"``.
    """

    finders: tuple[str, ...]
    model: LogisticModel
    clip: dict[str, float]
    threshold: float | None
    kind: str
    feature_kinds: tuple[str, ...] = FEATURE_KINDS

    @classmethod
    def from_section(cls, entry: Mapping[str, Any], source: str, key: str) -> StackEntry:
        """Parse ``combiners.stack[key]`` of a calibration.

        Raises
        ------
        clusterfw.core.errors.InputError
            Naming the file (``source``) and what is wrong.
        """
        try:
            finders = tuple(str(f) for f in entry["finders"])
            model = LogisticModel.from_dict(entry)
            for kinds in (FEATURE_KINDS, LEGACY_FEATURE_KINDS):
                if list(model.feature_names) == feature_names(finders, kinds):
                    break
            else:
                raise ValueError(f"feature_names do not match finders {list(finders)}")
            clip = {f: float(entry["clip"][f]) for f in finders}
            if not all(0 < c < 0.5 for c in clip.values()):
                raise ValueError("clip values must lie in (0, 0.5)")
            t = entry.get("threshold")
            threshold = None if t is None else float(t)
            kind = str(entry.get("model", "stacked"))
        except (KeyError, TypeError, ValueError) as exc:
            msg = exc.args[0] if isinstance(exc, ValueError) and exc.args else repr(exc)
            raise InputError(source, f"malformed 'stack' model for {key}: {msg}") from None
        return cls(finders, model, clip, threshold, kind, tuple(kinds))


class StackCombiner(PercentileCombiner):
    """Logistic model on reference rank percentiles and coverage, fitted by calibrate."""

    name = "stack"
    version = "1.0"
    score_kind = "probability"
    score_description = (
        "logistic-model probability of a true cluster from the finders' reference rank "
        "percentiles and coverage (fitted by clusterfw calibrate)"
    )

    def combined_score(self, percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
        """Uncalibrated form: ``sigmoid(sum_f log p_f)`` (every finder covered)."""
        finders = sorted(percentiles)
        scores = {f: np.zeros(np.shape(percentiles[f])) for f in finders}
        clip = {f: _clip_of(None, f, scores[f]) for f in finders}
        x = stack_features(percentiles, scores, finders, clip)
        return default_model(finders).predict(x)

    def combined_score_of(
        self,
        percentiles: Mapping[str, np.ndarray],
        scores: Mapping[str, np.ndarray],
        calibration: Calibration,
        *,
        detected: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The fitted model's probability (or the equal-weight default, see the module)."""
        finders = sorted(scores)
        entry = self._entry(calibration, finders)
        kinds: Sequence[str] = FEATURE_KINDS
        if entry is None:
            clip = {f: _clip_of(calibration, f, scores[f]) for f in finders}
            model = default_model(finders)
        else:
            clip, model, kinds = entry.clip, entry.model, entry.feature_kinds
        x = stack_features(percentiles, scores, finders, clip, detected, kinds)
        return model.predict(x)

    def _entry(self, calibration: Calibration, finders: Sequence[str]) -> StackEntry | None:
        raw = calibration.combiner_entry(self.name, finders)
        if raw is None:
            return None
        from clusterfw.core.evaluation.calibration import finder_set_key

        return StackEntry.from_section(raw, calibration.source, finder_set_key(finders))

    def decide(
        self,
        scores: Mapping[str, np.ndarray],
        combined: np.ndarray,
        calibration: Calibration,
        in_sample: list[str],
        *,
        covered: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        """``combined >= threshold`` with the fitted model's threshold."""
        finders = sorted(scores)
        entry = self._entry(calibration, finders)
        if entry is None:
            warn_uncalibrated(
                self.name,
                f"calibration ({calibration.source}) has no model for finders "
                f"{'+'.join(finders)}: score is the equal-weight (rank product) logistic form",
            )
            return None, {"model": "default (equal weights)", "threshold": None}
        info: dict[str, Any] = {
            "model": entry.kind,
            "threshold": entry.threshold,
            "weights": entry.model.weights(),
            "intercept": entry.model.intercept,
        }
        if entry.threshold is None:
            warn_uncalibrated(self.name, f"the model for {'+'.join(finders)} has no threshold")
            return None, info
        if in_sample:
            warn_uncalibrated(
                self.name,
                "the model needs reference percentiles for every "
                f"finder, missing for {', '.join(in_sample)}",
            )
            return None, info
        return combined >= entry.threshold, info

    def calibrate_set(
        self, validation: ValidationSet, reference: Calibration
    ) -> dict[str, Any] | None:
        """Fit the model on the pooled validation candidates (see the module docstring)."""
        from clusterfw.core.evaluation.calibration import CalibrationWarning, percentiles_for

        finders = sorted(validation.finders)
        raw = {f: validation.scores(f) for f in finders}
        with warnings.catch_warnings():  # in-sample fallback: reported with the entry instead
            warnings.simplefilter("ignore", CalibrationWarning)
            pct, in_sample = percentiles_for(raw, reference)
        clip = {f: _clip_of(reference, f, raw[f]) for f in finders}
        detected = _detected(validation, finders)
        x = stack_features(pct, raw, finders, clip, detected)
        y = validation.sample.qhalo >= 0
        names = feature_names(finders)

        # in-sample: each finder on the merged candidates, and its own catalogue (calibrate's
        # per-finder metrics, from the single-finder catalogues when given); for information
        single_f1: dict[str, float] = {}
        catalogue_f1: dict[str, float] = {}
        for f in finders:
            _, counts = validation.best_threshold(raw[f])
            single_f1[f] = _f1(counts.f1)
            own = (reference.finders.get(f) or {}).get("metrics") or {}
            catalogue_f1[f] = _f1(own["f1"]) if own.get("f1") is not None else single_f1[f]
        vf1: dict[str, float | None] = {f"single:{f}": single_f1[f] for f in finders}
        vf1.update({f"catalogue:{f}": catalogue_f1[f] for f in finders})

        # out of sample: the stacked model and each finder alone (its own detections), scored on
        # validation folds grouped by catalogue (stack_cv); the choice is made on these
        note = ""
        rejected: dict[str, Any] | None = None
        stacked: tuple[LogisticModel, dict[str, Any]] | None = None
        try:
            stacked = fit_logistic(x, y, names)
        except ValueError as exc:
            note = f"no stacked fit ({exc})"

        def fold_fit(xt: np.ndarray, yt: np.ndarray) -> LogisticModel:
            if stacked is None:
                raise ValueError("no stacked fit on all validation candidates")
            return fit_logistic_c(xt, yt, names, float(stacked[1]["C"]))

        singles = single_scores(x, finders, len(FEATURE_KINDS), detected)
        cv = cross_validate(validation, x, y, finders, fold_fit, singles)
        best_single = cv.best_single(finders)
        cv_single = cv.f1[f"single:{best_single}"]
        # the fallback: best_single alone, only its own detections when the catalogues say which
        # finder detected what (its own catalogue), with its F1-best threshold; its validation F1
        # depends only on the order of its scores (the logistic map is increasing), so the
        # one-feature fit is made only when the fallback is kept
        own_only = detected is not None
        _, counts_fb = validation.best_threshold(singles[best_single])
        f1_fallback = _f1(counts_fb.f1)
        vf1["fallback"] = f1_fallback
        chosen: LogisticModel
        fit_info: dict[str, Any]
        if stacked is not None:
            model, fit_info = stacked
            t, counts = validation.best_threshold(model.predict(x))
            vf1["stacked"] = _f1(counts.f1)
            chosen, kind = model, "stacked"
            cv_stacked = cv.f1.get("stacked")
            reason = ""
            if cv_stacked is None:
                reason = f"stacked model not cross-validated ({cv.note})"
            elif not cv_stacked > cv_single:
                reason = (
                    f"stacked CV F1 {cv_stacked:.4f} <= {best_single}'s {cv_single:.4f} "
                    f"({cv.folds.scheme}, {cv.folds.n_folds} folds)"
                )
            elif _f1(counts.f1) < f1_fallback:
                reason = (
                    f"stacked validation F1 {_f1(counts.f1):.4f} < {best_single}'s "
                    f"{f1_fallback:.4f} (CV F1 {cv_stacked:.4f} > {cv_single:.4f})"
                )
            if reason:
                note = f"fallback: {reason}"
                rejected = {**model.to_dict(), "threshold": t, "fit": fit_info}
                stacked = None
            else:
                note = (
                    f"stacked: CV F1 {cv_stacked:.4f} > {best_single}'s {cv_single:.4f} "
                    f"({cv.folds.scheme}, {cv.folds.n_folds} folds)"
                )
        if stacked is None:
            chosen, info_fb = _fallback_model(x, y, finders, best_single, own_only)
            prob_fb = chosen.predict(x)
            if detected is not None:  # the threshold among the finder's own detections
                prob_fb = np.where(detected[best_single], prob_fb, -np.inf)
            t, counts = validation.best_threshold(prob_fb)
            vf1["fallback"] = _f1(counts.f1)
            kind = "fallback"
            fit_info = {**info_fb, "own_detections_only": own_only}
            if not note:
                note = f"fallback: {best_single} alone"
        entry: dict[str, Any] = {
            "model": kind,
            "fallback_finder": best_single if kind == "fallback" else None,
            "finders": finders,
            **chosen.to_dict(),
            "clip": clip,
            "threshold": t,
            "metrics": counts.to_dict(),
            "validation_f1": vf1,
            "cv_f1": cv.f1,
            "cv": {**cv.to_dict(), "rule": RULE},
            "fit": fit_info,
            "note": note,
            "from": list(validation.sources),
        }
        if rejected is not None:
            entry["rejected_stacked_model"] = rejected
        if in_sample:
            entry["in_sample_percentiles"] = in_sample
        return entry

    @classmethod
    def describe_section(cls, section: Any) -> list[str]:
        """Lines ``clusterfw info calib.json`` prints for this combiner's section (weights)."""
        if not isinstance(section, Mapping):
            return [f"{cls.name}: not a mapping of finder sets"]
        lines = []
        for key, e in section.items():
            if not isinstance(e, Mapping):
                continue
            m = e.get("metrics") or {}
            vf1 = e.get("validation_f1") or {}
            singles = ", ".join(
                f"{k.split(':', 1)[1]} {_fmt(v)}" for k, v in vf1.items() if k.startswith("single:")
            )
            fit = e.get("fit") or {}
            lines.append(
                f"{cls.name}[{key}] model {e.get('model')} threshold {_fmt(e.get('threshold'), 4)}"
                f" validation F1 {_fmt(m.get('f1'))} (stacked {_fmt(vf1.get('stacked'))}; "
                f"single: {singles}) C={fit.get('C')} class_weight={fit.get('class_weight')}"
            )
            cv = e.get("cv") or {}
            if isinstance(cv, Mapping) and cv.get("f1"):
                f1s = ", ".join(f"{k} {_fmt(v)}" for k, v in cv["f1"].items())
                lines.append(
                    f"  cross-validated F1 ({cv.get('scheme')}, {cv.get('folds')} folds): {f1s}"
                )
                if cv.get("rule"):
                    lines.append(f"  rule: {cv['rule']}")
            if e.get("note"):
                lines.append(f"  note: {e['note']}")
            lines.append(f"  {'intercept':<24} {_fmt(e.get('intercept'), 4, sign=True)}")
            for n, c in zip(e.get("feature_names", []), e.get("coefficients", []), strict=False):
                lines.append(f"  {n:<24} {_fmt(c, 4, sign=True)}")
        return lines


def _fallback_model(
    x: np.ndarray, y: np.ndarray, finders: Sequence[str], finder: str, own_only: bool = True
) -> tuple[LogisticModel, dict[str, Any]]:
    """``finder`` alone: ``sigmoid(a logit p + b - FORCED_PENALTY forced)`` over the full
    feature vector (``own_only``: only its own detections can pass; without detection facts
    its forced scores count too)."""
    n_kinds = len(FEATURE_KINDS)
    k = list(finders).index(finder) * n_kinds
    z = (x[:, k] - x[:, k + 1])[:, None]  # log p - log(1 - p) = logit p
    own = x[:, k + 3] == 0 if own_only else np.ones(len(y), dtype=bool)
    try:
        one, info = fit_logistic(z[own], y[own], [f"{finder}:logit_p"])
        a, b = float(one.coefficients[0]), one.intercept
    except ValueError as exc:
        a, b, info = 0.0, 0.0, {"error": str(exc)}
    if not a > 0:  # keep the order of the finder's own scores: sigmoid(logit p) = p
        a, b = 1.0, 0.0
    coef = np.zeros(len(finders) * n_kinds)
    coef[k], coef[k + 1] = a, -a
    if own_only:
        coef[k + 3] = -FORCED_PENALTY
    return LogisticModel(tuple(feature_names(finders)), coef, b), info


def _detected(validation: ValidationSet, finders: Sequence[str]) -> dict[str, np.ndarray] | None:
    """Whether each finder detected each pooled validation candidate (its ``<f>_ra`` is set in
    the combined catalogue); None when the tables do not say (or do not line up)."""
    tables = validation.tables
    n = validation.sample.qhalo.size
    if not tables:
        return None
    out = {}
    for f in finders:
        if not all(f"{f}_ra" in t.column_names for t in tables):
            return None
        det = np.concatenate(
            [t.column(f"{f}_ra").is_valid().to_numpy(zero_copy_only=False) for t in tables]
        )
        if det.size != n:
            return None
        out[f] = det.astype(bool)
    return out


def _clip_of(calibration: Calibration | None, finder: str, scores: np.ndarray) -> float:
    """``c_f``: the reference's floor ``0.5 / n``; for in-sample percentiles ``0.5 / N`` with
    ``N`` the finite scores at hand (their floor too)."""
    ref = calibration.reference(finder) if calibration is not None else None
    if ref is not None:
        return float(ref.floor)
    n = int(np.isfinite(np.asarray(scores, dtype=np.float64)).sum())
    return 0.5 / max(n, 1)


def _f1(x: float) -> float:
    return float(x) if np.isfinite(x) else 0.0


def _fmt(x: Any, digits: int = 3, sign: bool = False) -> str:
    if x is None:
        return "none"
    try:
        return f"{float(x):{'+' if sign else ''}.{digits}f}"
    except (TypeError, ValueError):
        return str(x)


@hookimpl(trylast=True)
def clusterfw_register_combiners(register: Any) -> None:
    """Register :class:`StackCombiner`."""
    register(StackCombiner)
