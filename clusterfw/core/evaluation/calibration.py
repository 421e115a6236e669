"""Calibration files: per-finder thresholds and reference score distributions, combiner thresholds.

A calibration is made by ``clusterfw calibrate`` on validation skies (simulated, with truth) and
used by ``clusterfw run --calibration FILE``: it turns scores into ``is_cluster`` decisions and
gives the ``rankprod`` and ``and`` combiners their reference percentiles, so that a score means
the same in every run.

File format (JSON, never pickle)
--------------------------------
::

    {
      "format": "clusterfw.calibration", "version": 1,
      "created": "...", "command": "clusterfw calibrate ...", "clusterfw_version": "...",
      "selection": {"mass_col": "mvir", "mass_min": 2e14, "z_min": 0.25,
                    "radius_arcmin": 1.0, "duplicates": "false_positive"},
      "sources": [{"catalogue": "...", "truth": "...", "sha256": "..."}],
      "finders": {
        "mf": {"score_kind": "snr", "threshold": 5.1, "threshold_from": "mf.parquet",
               "metrics": {"tp": ..., "purity": ..., "completeness": ..., "f1": ...},
               "reference": {"n": 5321, "values": [...], "cdf": [...], "from": "..."}}
      },
      "combiners": {
        "rankprod": {"mf+resnet": {"threshold": 0.93, "metrics": {...}}},
        "and": {"mf+resnet": {"thresholds": {"mf": 4.2, "resnet": null}, "metrics": {...}}}
      }
    }

``threshold`` means ``score >= threshold`` is a cluster; ``null`` in an AND pair means *no cut*
(the threshold at its minimum). Combiner entries are keyed by the sorted finder names joined by
``+``.

Reference distributions
-----------------------
The reference of a finder is the empirical CDF (ECDF) of its scores on the validation sky,
``F(s) = #{scores <= s} / n``, stored compactly as knots ``(values, cdf)``: every distinct score
when there are at most 2048, otherwise the exact ECDF at 2048 ranks spaced uniformly in
probability plus a geometric grid towards the top tail (where thresholds live). Between knots the
percentile is interpolated linearly; it is exact at the knots. Scores below the lowest knot, and
missing (NaN) scores, get the floor ``0.5 / n``; scores above the highest knot get 1.

When the validation catalogue is a combined one (``<finder>_score`` columns), the reference is
the distribution of the finder's score over all merged candidates, forced scores included: the
very population the combiner ranks at run time.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from clusterfw.core.errors import ClusterfwError, InputError

FORMAT = "clusterfw.calibration"
VERSION = 1
MAX_KNOTS = 2048
DEFAULT_CALIBRATION_RESOURCE = ("clusterfw.plugins.combiners", "default_calibration.json")


class CalibrationWarning(UserWarning):
    """A calibration lacks something a combiner wanted; a fallback was used."""


def finder_set_key(names: Sequence[str]) -> str:
    """Key of a finder combination in the ``combiners`` section: sorted names joined by ``+``."""
    return "+".join(sorted(names))


@dataclass(frozen=True)
class ReferenceECDF:
    """A compact empirical CDF of a finder's scores on a validation sky.

    Attributes
    ----------
    values : ndarray
        Increasing, distinct knot scores.
    cdf : ndarray
        ECDF at the knots (``#{s <= value} / n``).
    n : int
        Number of scores the ECDF was built from.
    """

    values: np.ndarray
    cdf: np.ndarray
    n: int

    @classmethod
    def from_scores(cls, scores: np.ndarray, max_knots: int = MAX_KNOTS) -> ReferenceECDF:
        """Build from scores (NaN ignored).

        Raises
        ------
        ValueError
            With no finite score.
        """
        s = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
        n = s.size
        if n == 0:
            raise ValueError("no finite scores to build a reference distribution from")
        uniq, last = np.unique(s[::-1], return_index=True)  # last occurrence in sorted order
        counts_le = n - last  # number of scores <= each distinct value
        if uniq.size > max_knots:
            n_lin = max_knots // 2
            p = np.r_[
                np.linspace(0.0, 1.0, n_lin), 1.0 - np.geomspace(0.5, 1.0 / n, max_knots - n_lin)
            ]
            ranks = np.unique(np.clip(np.round(p * (n - 1)).astype(np.int64), 0, n - 1))
            pick = np.unique(np.searchsorted(uniq, s[ranks]))
            uniq, counts_le = uniq[pick], counts_le[pick]
        return cls(values=uniq, cdf=counts_le / n, n=int(n))

    @property
    def floor(self) -> float:
        """Percentile given to scores below every knot and to missing scores (``0.5 / n``)."""
        return 0.5 / self.n

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Rank percentile of scores under this reference, in ``[0.5 / n, 1]``."""
        x = np.asarray(scores, dtype=np.float64)
        out = np.interp(x, self.values, self.cdf, left=self.floor, right=1.0)
        return np.where(np.isfinite(x), out, self.floor)

    def quantile(self, p: float) -> float:
        """The smallest knot score whose percentile is ``>= p``."""
        k = int(np.searchsorted(self.cdf, p, side="left"))
        return float(self.values[min(k, self.values.size - 1)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (values as float32-precision decimals)."""
        return {
            "n": self.n,
            "values": [float(f"{v:.7g}") for v in self.values],
            "cdf": [float(f"{c:.9g}") for c in self.cdf],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceECDF:
        """Inverse of :meth:`to_dict`."""
        values = np.asarray(d["values"], dtype=np.float64)
        cdf = np.asarray(d["cdf"], dtype=np.float64)
        if values.size == 0 or values.size != cdf.size or np.any(np.diff(values) <= 0):
            raise ValueError("reference needs increasing 'values' and 'cdf' of equal length")
        return cls(values=values, cdf=cdf, n=int(d["n"]))


def in_sample_percentile(scores: np.ndarray) -> np.ndarray:
    """DeepSZ's percentile within the table at hand: ``q_i = #{j: s_j <= s_i} / N``.

    NaN scores get ``0.5 / N`` (``N`` = number of finite scores). Used only when no reference
    distribution is available: unlike :meth:`ReferenceECDF.percentile`, the result depends on
    which candidates are in the table.
    """
    s = np.asarray(scores, dtype=np.float64)
    fin = np.isfinite(s)
    n = int(fin.sum())
    out = np.full(s.size, 0.5 / max(n, 1))
    if n:
        sorted_s = np.sort(s[fin])
        out[fin] = np.searchsorted(sorted_s, s[fin], side="right") / n
    return out


@dataclass
class Calibration:
    """Thresholds and reference distributions (see the module docstring for the file format).

    Attributes
    ----------
    finders : dict
        ``name -> {"threshold": float|None, "reference": ReferenceECDF|None, ...}``.
    combiners : dict
        ``combiner -> finder-set key -> entry``.
    meta : dict
        Everything else in the file (creation time, command, selection, sources).
    source : str
        Where it came from (a path, ``"default"``, ``"empty"``).
    """

    finders: dict[str, dict[str, Any]] = field(default_factory=dict)
    combiners: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "memory"

    def reference(self, finder: str) -> ReferenceECDF | None:
        """The finder's reference distribution, or None."""
        ref = self.finders.get(finder, {}).get("reference")
        return ref if isinstance(ref, ReferenceECDF) else None

    def threshold(self, finder: str) -> float | None:
        """The finder's F1-best threshold, or None."""
        t = self.finders.get(finder, {}).get("threshold")
        return None if t is None else float(t)

    def combiner_entry(self, combiner: str, finders: Sequence[str]) -> dict[str, Any] | None:
        """The entry for a combiner and finder set, or None."""
        return self.combiners.get(combiner, {}).get(finder_set_key(finders))

    def and_thresholds(self, finders: Sequence[str]) -> dict[str, float] | None:
        """Thresholds of the AND combiner for these finders: the jointly calibrated pair when
        the calibration has one, else each finder's own F1-best threshold; None if any is
        missing. ``-inf`` means no cut."""
        entry = self.combiner_entry("and", finders)
        if entry is not None and "thresholds" in entry:
            th = entry["thresholds"]
            if all(f in th for f in finders):
                return {f: (-np.inf if th[f] is None else float(th[f])) for f in finders}
        out = {f: self.threshold(f) for f in finders}
        if any(v is None for v in out.values()):
            return None
        return {f: float(v) for f, v in out.items() if v is not None}

    def apply_threshold(self, finder: str, scores: np.ndarray) -> np.ndarray | None:
        """``scores >= threshold`` for a finder (None when the calibration has no threshold)."""
        t = self.threshold(finder)
        if t is None:
            return None
        s = np.asarray(scores, dtype=np.float64)
        return np.nan_to_num(s, nan=-np.inf) >= t

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        finders = {}
        for name, entry in self.finders.items():
            e = dict(entry)
            if isinstance(e.get("reference"), ReferenceECDF):
                ref = e["reference"]
                e["reference"] = {**ref.to_dict(), **e.get("reference_info", {})}
            e.pop("reference_info", None)
            finders[name] = e
        combiners: dict[str, Any] = {}
        for cname, entries in self.combiners.items():
            combiners[cname] = {}
            for key, entry in entries.items():
                e = dict(entry)
                if "thresholds" in e:
                    e["thresholds"] = {
                        f: (None if (t is None or not np.isfinite(t)) else float(t))
                        for f, t in e["thresholds"].items()
                    }
                combiners[cname][key] = e
        return {
            "format": FORMAT,
            "version": VERSION,
            **self.meta,
            "finders": finders,
            "combiners": combiners,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "memory") -> Calibration:
        """Parse a calibration document.

        Raises
        ------
        clusterfw.core.errors.InputError
            When the document is not a clusterfw calibration (``source`` names the file).
        """
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise InputError(source, f"not a clusterfw calibration file (format != {FORMAT!r})")
        if int(d.get("version", 0)) > VERSION:
            raise InputError(
                source,
                f"calibration version {d.get('version')} is newer than "
                f"this clusterfw understands ({VERSION})",
            )
        finders: dict[str, dict[str, Any]] = {}
        try:
            for name, entry in dict(d.get("finders", {})).items():
                e = dict(entry)
                if e.get("reference") is not None:
                    raw = e["reference"]
                    e["reference"] = ReferenceECDF.from_dict(raw)
                    info = {k: v for k, v in raw.items() if k not in ("n", "values", "cdf")}
                    if info:
                        e["reference_info"] = info
                if e.get("threshold") is not None:
                    e["threshold"] = float(e["threshold"])
                finders[str(name)] = e
            combiners = {
                str(c): {str(k): dict(v) for k, v in dict(entries).items()}
                for c, entries in dict(d.get("combiners", {})).items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(source, f"malformed calibration ({exc})") from exc
        meta = {
            k: v for k, v in d.items() if k not in ("format", "version", "finders", "combiners")
        }
        return cls(finders=finders, combiners=combiners, meta=meta, source=source)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the calibration as JSON, atomically."""
        from clusterfw.core.evaluation.io import write_json_atomic

        return write_json_atomic(self.to_dict(), path)

    @classmethod
    def coerce(cls, obj: Any) -> Calibration:
        """Accept a Calibration, a path, a parsed mapping, or None (the shipped default)."""
        if obj is None:
            return default_calibration()
        if isinstance(obj, Calibration):
            return obj
        if isinstance(obj, (str, os.PathLike)):
            return load_calibration(obj)
        if isinstance(obj, Mapping):
            return cls.from_dict(obj)
        raise ClusterfwError(f"cannot use a {type(obj).__name__} as a calibration")


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read a calibration file.

    Raises
    ------
    clusterfw.core.errors.InputError
        Missing file, invalid JSON or not a calibration.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "no such calibration file")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(p), f"not valid JSON ({exc})") from exc
    return Calibration.from_dict(doc, source=str(p))


def default_calibration() -> Calibration:
    """The calibration shipped with clusterfw for its built-in finders.

    Returns an empty calibration (``source == "empty"``) when the package has none.
    """
    pkg, name = DEFAULT_CALIBRATION_RESOURCE
    try:
        res = resources.files(pkg).joinpath(name)
        if not res.is_file():
            return Calibration(source="empty")
        doc = json.loads(res.read_text())
    except (ModuleNotFoundError, FileNotFoundError):
        return Calibration(source="empty")
    cal = Calibration.from_dict(doc, source=f"default:{name}")
    return cal


def percentiles_for(
    scores: Mapping[str, np.ndarray], calibration: Calibration | None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Rank percentiles of each finder's scores.

    Uses the calibration's reference distribution of each finder; finders without one fall
    back to :func:`in_sample_percentile` (with a :class:`CalibrationWarning`).

    Returns
    -------
    percentiles : dict of str to ndarray
    in_sample : list of str
        Finders for which the in-sample fallback was used.
    """
    out: dict[str, np.ndarray] = {}
    fallback: list[str] = []
    for name, s in scores.items():
        ref = calibration.reference(name) if calibration is not None else None
        if ref is None:
            fallback.append(name)
            out[name] = in_sample_percentile(s)
        else:
            out[name] = ref.percentile(s)
    if fallback:
        src = calibration.source if calibration is not None else "none"
        warnings.warn(
            f"calibration ({src}) has no reference distribution for {', '.join(fallback)}: "
            "using percentiles within this table, so scores are not comparable across runs "
            "(make one with `clusterfw calibrate`)",
            CalibrationWarning,
            stacklevel=3,
        )
    return out, fallback


def rank_product(percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
    """Product of rank percentiles over finders (DeepSZ EnsemblePROD), in ``(0, 1]``."""
    arrays = list(percentiles.values())
    out = np.ones_like(np.asarray(arrays[0], dtype=np.float64))
    for a in arrays:
        out = out * np.asarray(a, dtype=np.float64)
    return out


def min_percentile(percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
    """Smallest rank percentile over finders (the AND combiner's score)."""
    return np.min(
        np.vstack([np.asarray(a, dtype=np.float64) for a in percentiles.values()]), axis=0
    )


# --------------------------------------------------------------------------------------------
# making a calibration


def combined_finders(column_names: Sequence[str]) -> list[str]:
    """Finders of a combined catalogue: those with ``<f>_score``, ``<f>_ra`` and ``<f>_dec``."""
    names = set(column_names)
    out = []
    for c in column_names:
        if c.endswith("_score") and c != "score":
            f = c[: -len("_score")]
            if f + "_ra" in names and f + "_dec" in names:
                out.append(f)
    return out


@dataclass
class _Input:
    path: str
    truth_path: str
    table: Any
    truth: Any
    kind: str  # "single" or "combined"
    finders: list[str]


def calibrate(
    inputs: Sequence[tuple[Any, Any]],
    *,
    labels: Sequence[tuple[str, str]] | None = None,
    mass_min: float = 2e14,
    z_min: float = 0.25,
    radius_arcmin: float = 1.0,
    duplicates: str = "false_positive",
    command: str = "",
) -> Calibration:
    """Make a calibration from validation catalogues and their truth.

    Parameters
    ----------
    inputs : sequence of (table, Truth)
        Validation catalogues with their truth. A table is *single* (one finder's catalogue:
        the ``finder`` column names it, ``score`` is its score) or *combined* (``<f>_score``,
        ``<f>_ra``, ``<f>_dec`` for each finder ``f``, as written by ``--combine``).
    labels : sequence of (catalogue, truth) str, optional
        File names recorded in the calibration.
    mass_min, z_min, radius_arcmin, duplicates
        True-cluster selection and matching (see :mod:`~clusterfw.core.evaluation.metrics`).
    command : str
        Recorded in the file.

    Returns
    -------
    Calibration
        For each finder: the F1-best threshold (from its single catalogues when given, else from
        the combined ones) and the reference ECDF (from combined catalogues when given, else
        from its single ones). For each finder set of the combined catalogues: the ``rankprod``
        threshold (on the product of reference percentiles) and the ``and`` thresholds (grid
        search, one per finder). Samples of several skies are pooled.
    """
    import datetime

    import clusterfw
    from clusterfw.core.evaluation.matching import as_columns
    from clusterfw.core.evaluation.metrics import MatchedSample, and_grid_search

    labels = (
        list(labels) if labels is not None else [(f"input{i}", "truth") for i in range(len(inputs))]
    )
    parsed: list[_Input] = []
    for (table, truth), (lab, tlab) in zip(inputs, labels, strict=True):
        names = (
            list(table.column_names) if hasattr(table, "column_names") else list(as_columns(table))
        )
        comb = combined_finders(names)
        if comb:
            parsed.append(_Input(lab, tlab, table, truth, "combined", comb))
        else:
            cols = as_columns(table)
            fvals = {str(v) for v in np.asarray(cols.get("finder", np.array([], dtype=object)))}
            if len(fvals) != 1:
                raise InputError(
                    lab,
                    "cannot tell which finder made this catalogue "
                    "(need one value in column 'finder', or <finder>_score columns)",
                )
            parsed.append(_Input(lab, tlab, table, truth, "single", [fvals.pop()]))

    sel = dict(mass_min=mass_min, z_min=z_min, radius_arcmin=radius_arcmin)

    def sample_of(inp: _Input, cols: list[str]) -> MatchedSample:
        return MatchedSample.from_catalogue(inp.table, inp.truth, cols, **sel)

    singles: dict[str, list[MatchedSample]] = {}
    single_src: dict[str, list[str]] = {}
    combined: dict[str, list[MatchedSample]] = {}
    comb_src: dict[str, list[str]] = {}
    score_kind: dict[str, str] = {}
    for inp in parsed:
        if inp.kind == "single":
            f = inp.finders[0]
            s = sample_of(inp, ["score"])
            s.scores = {f: s.scores["score"]}
            singles.setdefault(f, []).append(s)
            single_src.setdefault(f, []).append(inp.path)
            kinds = {str(v) for v in as_columns(inp.table).get("score_kind", [])}
            if len(kinds) == 1:
                score_kind[f] = kinds.pop()
        else:
            s = sample_of(inp, [f + "_score" for f in inp.finders])
            s.scores = {f: s.scores[f + "_score"] for f in inp.finders}
            key = finder_set_key(inp.finders)
            combined.setdefault(key, []).append(s)
            comb_src.setdefault(key, []).append(inp.path)

    cal = Calibration(source="memory")
    all_finders = sorted(set(singles) | {f for k in combined for f in k.split("+")})
    for f in all_finders:
        comb_samples = [s for k, ss in combined.items() if f in k.split("+") for s in ss]
        comb_paths = [p for k, ps in comb_src.items() if f in k.split("+") for p in ps]
        thr_samples = singles.get(f) or comb_samples
        thr_from = single_src.get(f) if singles.get(f) else comb_paths
        ref_samples = comb_samples or singles.get(f, [])
        ref_from = comb_paths if comb_samples else single_src.get(f, [])
        pooled = MatchedSample.concat([_only(s, f) for s in thr_samples])
        curve = pooled.curve(f, duplicates)  # type: ignore[arg-type]
        t, counts = curve.best()
        ref_scores = np.concatenate([s.scores[f] for s in ref_samples])
        entry: dict[str, Any] = {
            "threshold": t if np.isfinite(t) else None,
            "threshold_from": thr_from,
            "metrics": counts.to_dict(),
        }
        if f in score_kind:
            entry = {"score_kind": score_kind[f], **entry}
        if np.isfinite(ref_scores).any():
            entry["reference"] = ReferenceECDF.from_scores(ref_scores)
            entry["reference_info"] = {"from": ref_from}
        cal.finders[f] = entry

    for key, samples in combined.items():
        names = key.split("+")
        pooled = MatchedSample.concat(samples)
        pct, _ = percentiles_for({f: pooled.scores[f] for f in names}, cal)
        pooled.scores["__rankprod"] = rank_product(pct)
        curve = pooled.curve("__rankprod", duplicates)  # type: ignore[arg-type]
        t, counts = curve.best()
        cal.combiners.setdefault("rankprod", {})[key] = {
            "threshold": t,
            "metrics": counts.to_dict(),
            "from": comb_src[key],
            "rank_percentile_of_threshold": float(np.mean(pooled.scores["__rankprod"] < t)),
        }
        thresholds, counts = and_grid_search(pooled, names, duplicates=duplicates)  # type: ignore[arg-type]
        cal.combiners.setdefault("and", {})[key] = {
            "thresholds": thresholds,
            "metrics": counts.to_dict(),
            "from": comb_src[key],
        }

    cal.meta = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "clusterfw_version": getattr(clusterfw, "__version__", "unknown"),
        "command": command,
        "selection": {
            "mass_col": parsed[0].truth.mass_col if parsed else "mvir",
            **sel,
            "duplicates": duplicates,
        },
        "sources": [
            {"catalogue": p.path, "truth": p.truth_path, "kind": p.kind, "finders": p.finders}
            for p in parsed
        ],
    }
    return cal


def _only(sample: Any, name: str) -> Any:
    from clusterfw.core.evaluation.metrics import MatchedSample

    return MatchedSample(
        qhalo=sample.qhalo, n_true=sample.n_true, scores={name: sample.scores[name]}
    )
