"""Calibration files: per-finder thresholds and reference score distributions, and one opaque
section per combiner, owned by that combiner.

A calibration is made by ``clusterfw calibrate`` on validation skies (simulated, with truth) and
used by ``clusterfw run --calibration FILE``: per-finder thresholds turn single-finder scores into
``is_cluster`` decisions, reference distributions give combiners percentiles that mean the same in
every run, and each combiner reads back the section it wrote.

The typed API
-------------
- :class:`Calibration`: :meth:`~Calibration.threshold` and :meth:`~Calibration.reference` per
  finder, :meth:`~Calibration.section` / :meth:`~Calibration.set_section` per combiner,
  :meth:`~Calibration.combiner_entry` for sections keyed by finder set, ``source``;
- :class:`ReferenceECDF`: a finder's reference distribution (:meth:`~ReferenceECDF.percentile`);
- :func:`percentile` and :func:`percentiles_for`: the rank percentiles the built-in combiners use
  (reference ECDF, else within the table);
- :class:`ValidationSet`: what :meth:`Combiner.calibrate
  <clusterfw.core.plugin_api.Combiner.calibrate>` receives;
- :func:`calibrate`: the whole of ``clusterfw calibrate``; it calls ``calibrate`` on every installed
  combiner and knows none by name.

File format (JSON, never pickle)
--------------------------------
::

    {
      "format": "clusterfw.calibration", "version": 1,
      "created": "...", "command": "clusterfw calibrate ...", "clusterfw_version": "...",
      "selection": {"mass_col": "mvir", "mass_min": 2e14, "z_min": 0.25,
                    "radius_arcmin": 1.0, "duplicates": "false_positive"},
      "sources": [{"catalogue": "...", "truth": "...", "kind": "single", "finders": ["mf"]}],
      "finders": {
        "mf": {"score_kind": "snr", "threshold": 5.1, "threshold_from": ["mf.parquet"],
               "metrics": {"tp": ..., "purity": ..., "completeness": ..., "f1": ...},
               "reference": {"n": 5321, "values": [...], "cdf": [...], "from": [...]}}
      },
      "combiners": {
        "<combiner name>": <any JSON value, written and read by that combiner>
      }
    }

``threshold`` means ``score >= threshold`` is a cluster. Non-finite numbers are written as
``null``. The built-in combiners key their sections by finder set (the sorted finder names joined
by ``+``, :func:`finder_set_key`): ``"rankprod": {"mf+resnet": {"threshold": 0.48, ...}}`` and
``"and": {"mf+resnet": {"thresholds": {"mf": 6.3, "resnet": null}, ...}}`` (``null``: no cut); see
:mod:`clusterfw.plugins.combiners`. Files written before combiner sections were opaque have exactly
this layout, so every version-1 file still loads.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterfw.core.errors import ClusterfwError, InputError, PluginError

if TYPE_CHECKING:
    import pyarrow as pa

    from clusterfw.core.evaluation.metrics import Counts, Duplicates, MatchedSample
    from clusterfw.core.plugin_api import Combiner

FORMAT = "clusterfw.calibration"
VERSION = 1
MAX_KNOTS = 2048
DEFAULT_PLACEHOLDER_SOURCE = "default"
"""``source`` of :func:`default_calibration`'s placeholder: "each combiner's own default"."""


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


def percentile(scores: np.ndarray, reference: ReferenceECDF | None = None) -> np.ndarray:
    """Rank percentiles of scores: under ``reference`` when given, else within ``scores``.

    Parameters
    ----------
    scores : array_like
        One finder's scores (NaN where missing).
    reference : ReferenceECDF, optional
        The finder's reference distribution (``Calibration.reference(finder)``).

    Returns
    -------
    ndarray
        In ``(0, 1]``; missing scores get the floor (``0.5 / n``).
    """
    if reference is not None:
        return reference.percentile(scores)
    return in_sample_percentile(scores)


def _json_safe(obj: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays to Python, non-finite floats to ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    return obj


@dataclass
class Calibration:
    """Per-finder thresholds and reference distributions, and one section per combiner.

    See the module docstring for the file format.

    Attributes
    ----------
    finders : dict
        ``name -> {"threshold": float|None, "reference": ReferenceECDF|None, ...}`` (further
        keys: ``score_kind``, ``metrics``, ``threshold_from``, ``reference_info``).
    combiners : dict
        ``combiner name -> section``: any JSON value, written by that combiner's
        :meth:`~clusterfw.core.plugin_api.Combiner.calibrate` and read by its
        :meth:`~clusterfw.core.plugin_api.Combiner.combine`; the core never looks inside.
    meta : dict
        Everything else in the file (creation time, command, selection, sources).
    source : str
        Where it came from (a path, ``"default:<file>"``, ``"empty"``, ``"memory"``, or
        ``"default"`` for the placeholder of :func:`default_calibration`).
    """

    finders: dict[str, dict[str, Any]] = field(default_factory=dict)
    combiners: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "memory"

    @property
    def is_default_placeholder(self) -> bool:
        """Whether this is :func:`default_calibration`'s "use each combiner's default"."""
        return self.source == DEFAULT_PLACEHOLDER_SOURCE and not (self.finders or self.combiners)

    def reference(self, finder: str) -> ReferenceECDF | None:
        """The finder's reference distribution, or None."""
        ref = self.finders.get(finder, {}).get("reference")
        return ref if isinstance(ref, ReferenceECDF) else None

    def threshold(self, finder: str) -> float | None:
        """The finder's F1-best threshold, or None."""
        t = self.finders.get(finder, {}).get("threshold")
        return None if t is None else float(t)

    def section(self, combiner: str) -> Any | None:
        """The section a combiner wrote (its :meth:`Combiner.calibrate` result), or None."""
        return self.combiners.get(combiner)

    def set_section(self, combiner: str, section: Any) -> None:
        """Store a combiner's section (JSON-ready; non-finite floats are written as null)."""
        self.combiners[str(combiner)] = section

    def combiner_entry(self, combiner: str, finders: Sequence[str]) -> dict[str, Any] | None:
        """``section(combiner)[finder_set_key(finders)]`` for sections keyed by finder set.

        None when the combiner has no section, the section is not a mapping, or it has no entry
        (a mapping) for this finder set.
        """
        sec = self.section(combiner)
        if not isinstance(sec, Mapping):
            return None
        entry = sec.get(finder_set_key(finders))
        return dict(entry) if isinstance(entry, Mapping) else None

    def apply_threshold(self, finder: str, scores: np.ndarray) -> np.ndarray | None:
        """``scores >= threshold`` for a finder (None when the calibration has no threshold)."""
        t = self.threshold(finder)
        if t is None:
            return None
        s = np.asarray(scores, dtype=np.float64)
        return np.asarray(np.nan_to_num(s, nan=-np.inf) >= t)

    def merged_with(self, other: Calibration) -> Calibration:
        """A copy with ``other``'s finders and combiner sections added where this one lacks them."""
        return Calibration(
            finders={**other.finders, **self.finders},
            combiners={**other.combiners, **self.combiners},
            meta=dict(self.meta),
            source=self.source,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (non-finite numbers become null)."""
        finders = {}
        for name, entry in self.finders.items():
            e = dict(entry)
            if isinstance(e.get("reference"), ReferenceECDF):
                ref = e["reference"]
                e["reference"] = {**ref.to_dict(), **e.get("reference_info", {})}
            e.pop("reference_info", None)
            finders[name] = _json_safe(e)
        return {
            "format": FORMAT,
            "version": VERSION,
            **_json_safe(self.meta),
            "finders": finders,
            "combiners": {str(c): _json_safe(sec) for c, sec in self.combiners.items()},
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
        try:
            version = int(d.get("version", 0))
        except (TypeError, ValueError):
            raise InputError(
                source, f"malformed calibration (version {d.get('version')!r})"
            ) from None
        if version > VERSION:
            raise InputError(
                source,
                f"calibration version {d.get('version')} is newer than "
                f"this clusterfw understands ({VERSION})",
            )
        finders: dict[str, dict[str, Any]] = {}
        try:
            for name, entry in dict(d.get("finders") or {}).items():
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
            combiners = {str(c): sec for c, sec in dict(d.get("combiners") or {}).items()}
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
        """Accept a Calibration, a path, a parsed mapping, or None (the default placeholder)."""
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


def load_calibration_resource(package: str, name: str) -> Calibration | None:
    """A calibration shipped as package data (e.g. a combiner's default); None if absent.

    Parameters
    ----------
    package : str
        Importable package holding the file (``__package__`` of the combiner's module).
    name : str
        File name inside it.
    """
    try:
        res = resources.files(package).joinpath(name)
        if not res.is_file():
            return None
        doc = json.loads(res.read_text())
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{package}/{name}", f"not valid JSON ({exc})") from exc
    return Calibration.from_dict(doc, source=f"default:{name}")


def default_calibration(combiner: type[Combiner] | Combiner | None = None) -> Calibration:
    """The calibration used when a run gives none.

    Parameters
    ----------
    combiner : Combiner class or instance, optional
        Whose default to return (:meth:`Combiner.default_calibration`; an empty calibration when
        it has none).

    Returns
    -------
    Calibration
        Without ``combiner``: a placeholder (``source == "default"``, empty) that each combiner
        replaces with its own default in :meth:`Combiner.resolve_calibration`. The core ships no
        calibration: defaults belong to the combiners.
    """
    if combiner is None:
        return Calibration(source=DEFAULT_PLACEHOLDER_SOURCE)
    cls = combiner if isinstance(combiner, type) else type(combiner)
    own = cls.default_calibration()
    return own if own is not None else Calibration(source="empty")


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
        out[name] = percentile(s, ref)
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


@dataclass(frozen=True)
class ValidationSet:
    """The combined validation catalogues of one finder set, matched to truth and pooled.

    What :meth:`Combiner.calibrate <clusterfw.core.plugin_api.Combiner.calibrate>` receives,
    one per finder set.

    Attributes
    ----------
    finders : tuple of str
        The finders, in the order of the first catalogue's columns.
    sample : MatchedSample
        Per candidate (all skies pooled): ``sample.scores[f]`` is finder ``f``'s score (its
        detection or forced score; NaN where missing) and ``sample.qhalo`` the true cluster it
        matches (-1 for none); ``sample.n_true`` true clusters in all.
    tables : tuple of pyarrow.Table
        The catalogues as read (one per sky), for combiners that need more than the scores.
    sources : tuple of str
        Their file names.
    producers : tuple of str
        The combiner that wrote each catalogue (its ``finder`` column).
    duplicates : str
        ``"false_positive"`` or ``"ignore"``: how further candidates on a found cluster count.
    n_true_per_table : tuple of int
        True clusters of each catalogue's sky (empty when unknown), for per-sky folds.
    """

    finders: tuple[str, ...]
    sample: MatchedSample
    tables: tuple[pa.Table, ...]
    sources: tuple[str, ...]
    producers: tuple[str, ...]
    duplicates: str = "false_positive"
    n_true_per_table: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        """The finder-set key (:func:`finder_set_key`)."""
        return finder_set_key(self.finders)

    def scores(self, finder: str) -> np.ndarray:
        """One finder's score per candidate."""
        return self.sample.scores[finder]

    def best_threshold(self, values: np.ndarray) -> tuple[float, Counts]:
        """F1-best threshold of any per-candidate score (``values >= t`` positive) and counts."""
        from clusterfw.core.evaluation.metrics import threshold_curve

        v = np.asarray(values, dtype=np.float64)
        if v.shape != self.sample.qhalo.shape:
            raise ValueError(f"{v.size} values for {self.sample.qhalo.size} candidates")
        curve = threshold_curve(v, self.sample.qhalo, self.sample.n_true, self._dup)
        return curve.best()

    def counts(self, positive: np.ndarray) -> Counts:
        """Purity/completeness counts of any per-candidate decision."""
        return self.sample.counts(np.asarray(positive, dtype=bool), self._dup)

    @property
    def _dup(self) -> Duplicates:
        return "ignore" if self.duplicates == "ignore" else "false_positive"


@dataclass
class _Input:
    path: str
    truth_path: str
    table: Any
    truth: Any
    kind: str  # "single" or "combined"
    finders: list[str]


def installed_combiners() -> list[Combiner]:
    """One instance (default options) of every installed combiner, sorted by name."""
    from clusterfw.core.plugins import Registry

    registry = Registry()
    out = []
    for name in registry.names("combiner"):
        cls = registry.get("combiner", name)
        try:
            out.append(cls())
        except Exception as exc:  # a combiner that cannot be built with defaults is skipped
            warnings.warn(
                f"combiner {name!r} not calibrated: cannot instantiate it with default options "
                f"({type(exc).__name__}: {exc})",
                CalibrationWarning,
                stacklevel=2,
            )
    return out


def calibrate(
    inputs: Sequence[tuple[Any, Any]],
    *,
    labels: Sequence[tuple[str, str]] | None = None,
    mass_min: float = 2e14,
    z_min: float = 0.25,
    radius_arcmin: float = 1.0,
    duplicates: str = "false_positive",
    command: str = "",
    combiners: Sequence[Combiner] | None = None,
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
    combiners : sequence of Combiner, optional
        Combiners to calibrate; default: every installed one (:func:`installed_combiners`).

    Returns
    -------
    Calibration
        For each finder: the F1-best threshold (from its single catalogues when given, else from
        the combined ones) and the reference ECDF (from combined catalogues when given, else
        from its single ones). For each combiner whose :meth:`Combiner.calibrate` returns a
        section (given a :class:`ValidationSet` per finder set of the combined catalogues and
        the per-finder part): that section. Samples of several skies are pooled.

    Raises
    ------
    clusterfw.core.errors.PluginError
        When a combiner's ``calibrate`` fails (naming the combiner).
    """
    import datetime

    import clusterfw
    from clusterfw.core.evaluation.matching import as_columns
    from clusterfw.core.evaluation.metrics import MatchedSample

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
    dup: Duplicates = "ignore" if duplicates == "ignore" else "false_positive"

    def sample_of(inp: _Input, cols: list[str]) -> MatchedSample:
        return MatchedSample.from_catalogue(inp.table, inp.truth, cols, **sel)

    singles: dict[str, list[MatchedSample]] = {}
    single_src: dict[str, list[str]] = {}
    combined: dict[str, list[MatchedSample]] = {}
    comb_inputs: dict[str, list[_Input]] = {}
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
            comb_inputs.setdefault(key, []).append(inp)
    comb_src = {k: [i.path for i in v] for k, v in comb_inputs.items()}

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
        curve = pooled.curve(f, dup)
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

    validation = [
        ValidationSet(
            finders=tuple(comb_inputs[key][0].finders),
            sample=MatchedSample.concat(samples),
            tables=tuple(i.table for i in comb_inputs[key]),
            sources=tuple(comb_src[key]),
            producers=tuple(_producer(i.table) for i in comb_inputs[key]),
            duplicates=dup,
            n_true_per_table=tuple(s.n_true for s in samples),
        )
        for key, samples in combined.items()
    ]
    if validation:
        for combiner in installed_combiners() if combiners is None else combiners:
            try:
                section = combiner.calibrate(validation, cal)
            except ClusterfwError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"combiner {combiner.name!r} failed to calibrate: {type(exc).__name__}: {exc}"
                ) from exc
            if section is not None:
                cal.set_section(combiner.name, section)

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


def calibration_summary(cal: Calibration) -> list[str]:
    """Lines ``clusterfw calibrate`` prints: each finder's threshold, then each combiner's.

    A combiner section keyed by finder set, with ``metrics`` (``tp``, ``purity``,
    ``completeness``, ``f1``) and ``threshold`` or ``thresholds`` per entry, gets one line per
    entry; any other section gets one line saying it was calibrated.
    """
    lines = []
    for name, e in cal.finders.items():
        m = e.get("metrics") or {}
        lines.append(
            f"{name:<10} threshold {e.get('threshold')!s:<12.8} F1 {_fmt(m.get('f1'))} "
            f"(purity {_fmt(m.get('purity'))}, completeness {_fmt(m.get('completeness'))})"
        )
    for cname, section in cal.combiners.items():
        entries: dict[str, Any] = (
            {str(k): v for k, v in section.items() if isinstance(v, Mapping) and "metrics" in v}
            if isinstance(section, Mapping)
            else {}
        )
        if not entries:
            lines.append(f"{cname}: calibrated ({type(section).__name__} section)")
        for key, e in entries.items():
            m = e["metrics"]
            th = e.get("thresholds", e.get("threshold"))
            lines.append(
                f"{cname}[{key}] threshold {th} F1 {_fmt(m.get('f1'))} "
                f"(purity {_fmt(m.get('purity'))}, completeness {_fmt(m.get('completeness'))})"
            )
    return lines


def describe_calibration(cal: Calibration) -> list[str]:
    """What ``clusterfw info calib.json`` prints: the file's provenance, the
    :func:`calibration_summary` lines, then each installed combiner's own description of its
    section (:meth:`clusterfw.core.plugin_api.Combiner.describe_section`; ``stack`` prints its
    weights).
    """
    from clusterfw.core.plugins import Registry

    lines = [f"{cal.source}: clusterfw calibration (format version {VERSION})"]
    for key in ("created", "clusterfw_version", "command"):
        if cal.meta.get(key):
            lines.append(f"  {key}: {cal.meta[key]}")
    if cal.meta.get("selection"):
        lines.append(f"  selection: {json.dumps(cal.meta['selection'])}")
    lines += calibration_summary(cal)
    registry = Registry()
    known = set(registry.names("combiner"))
    for cname, section in cal.combiners.items():
        if cname in known:
            cls: type[Combiner] = registry.get("combiner", cname)
            lines += cls.describe_section(section)
    return lines


def _fmt(x: Any) -> str:
    return "nan" if x is None else f"{float(x):.3f}"


def _producer(table: Any) -> str:
    names = list(getattr(table, "column_names", []))
    if "finder" not in names or not table.num_rows:
        return "unknown"
    vals = {str(v) for v in table.column("finder").to_pylist()}
    return vals.pop() if len(vals) == 1 else "unknown"


def _only(sample: MatchedSample, name: str) -> MatchedSample:
    from clusterfw.core.evaluation.metrics import MatchedSample

    return MatchedSample(
        qhalo=sample.qhalo, n_true=sample.n_true, scores={name: sample.scores[name]}
    )
