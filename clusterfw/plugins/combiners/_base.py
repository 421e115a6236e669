"""Shared machinery of the percentile combiners (``rankprod``, ``and``).

Steps of :meth:`PercentileCombiner.combine`:

1. **Cross-match** the finders' detections within ``radius_arcmin`` (default 1 arcmin;
   :mod:`clusterfw.core.evaluation.crossmatch`): each group is one merged candidate.
2. **Merged position**: the position reported by the detecting finder whose detection has the
   highest rank percentile (finder order breaks ties).
3. **Forced scoring**: each finder that did not detect a group is asked for its score at the
   merged position (``forced(finder, ra, dec)``); a finder's own detection score is used where it
   detected the group. Finders that cannot score (no forced scorer, ``ForcedScoringUnsupported``
   or NaN) leave the score null.
4. **Percentiles**: each finder's score is turned into a rank percentile with the reference ECDF
   of the calibration (so a score means the same in every run); a null score gets the floor
   percentile ``0.5 / n``. Finders the calibration has no reference for fall back to percentiles
   within the table (with a warning; the output records which).
5. The subclass turns the percentiles into ``score`` and the thresholds into ``is_cluster``.

Output columns: the standard ones (``finder`` = combiner name, ``tile_id`` = -1, candidate ids
``<combiner>-<index>``, ``flags`` bit ``merged`` (catalog_schema/flags.json) when further
detections of a finder within the radius were merged into the candidate), ``is_cluster`` (null
without a calibrated threshold), and for each finder ``f``: ``f_score`` (its detection or forced
score), ``f_ra``/``f_dec`` (its detection's position, null where it did not detect),
``f_candidate_id``,
``f_percentile`` and, when ``f``'s table has a ``flags`` column, ``f_flags`` (uint32, its
detection's flags, null where it did not detect), and, when ``f``'s table has an ``f_z`` column
(an optical finder's photo-z), ``f_z`` (its detection's value, null elsewhere: what the
``vgg_mass`` estimator reads as the candidate's redshift); plus ``<combiner>_n_detected``.
Rows are sorted by decreasing combined score.

Calibration
-----------
Each percentile combiner owns one section of the calibration file, keyed by finder set
(:func:`~clusterfw.core.evaluation.calibration.finder_set_key`): ``{"mf+resnet": {...}}``, made by
its :meth:`~PercentileCombiner.calibrate_set` on the pooled validation candidates of that finder
set. Their default calibration is ``default_calibration.json`` beside this module (see
``DEFAULT_CALIBRATION.md``), loaded through :meth:`PercentileCombiner.default_calibration`.
"""

from __future__ import annotations

import json
import warnings
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from clusterfw.core.errors import ForcedScoringUnsupported, PluginError
from clusterfw.core.plugin_api import Combiner, ForcedScorer, PluginOptions

if TYPE_CHECKING:
    from clusterfw.core.evaluation.calibration import Calibration, ValidationSet

DEFAULT_CALIBRATION_FILE = "default_calibration.json"


class PercentileCombinerOptions(PluginOptions):
    """Options shared by the percentile combiners."""

    radius_arcmin: float = Field(
        1.0, gt=0, description="cross-match radius between finders (arcmin)"
    )


class PercentileCombiner(Combiner):
    """Base class: cross-match, forced scoring, reference percentiles, table building."""

    score_kind: ClassVar[str] = "percentile"
    score_description: ClassVar[str] = ""
    #: True: percentiles of finders that do not cover a candidate (no data there) reach
    #: :meth:`combined_score` as NaN, to be left out; False: they get the floor percentile.
    uses_coverage: ClassVar[bool] = False
    Options = PercentileCombinerOptions

    @abstractmethod
    def combined_score(self, percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
        """The combined score from per-finder percentiles."""

    def combined_score_of(
        self,
        percentiles: Mapping[str, np.ndarray],
        scores: Mapping[str, np.ndarray],
        calibration: Calibration,
        *,
        detected: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The combined score from percentiles, raw scores (NaN: the finder cannot score there),
        the calibration in use and which finders detected each candidate themselves.

        The default is :meth:`combined_score` (percentiles only); a combiner that needs more
        (``stack``: which finders covered or detected a candidate, and its fitted model)
        overrides this.
        """
        return self.combined_score(percentiles)

    @abstractmethod
    def decide(
        self,
        scores: Mapping[str, np.ndarray],
        combined: np.ndarray,
        calibration: Calibration,
        in_sample: list[str],
        *,
        covered: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        """The ``is_cluster`` decision (None when not calibrated) and what was used.

        ``covered[f]`` is False where finder ``f``'s layers have no data at a candidate.
        """

    @abstractmethod
    def calibrate_set(
        self, validation: ValidationSet, reference: Calibration
    ) -> dict[str, Any] | None:
        """This combiner's entry for one finder set (stored under its key), or None."""

    def calibrate(
        self, validation: Sequence[ValidationSet], reference: Calibration
    ) -> dict[str, Any] | None:
        """``{finder-set key: calibrate_set(...)}`` over the validation finder sets."""
        section = {}
        for vs in validation:
            entry = self.calibrate_set(vs, reference)
            if entry is not None:
                section[vs.key] = entry
        return section or None

    @classmethod
    def default_calibration(cls) -> Calibration | None:
        """``default_calibration.json`` shipped beside the built-in combiners."""
        from clusterfw.core.evaluation.calibration import load_calibration_resource

        return load_calibration_resource(__package__ or __name__, DEFAULT_CALIBRATION_FILE)

    def combine(
        self,
        tables: Mapping[str, pa.Table],
        forced: ForcedScorer | None,
        calibration: Any | None = None,
    ) -> pa.Table:
        """Combine per-finder candidate tables (see the module docstring).

        Parameters
        ----------
        tables : mapping of str to pyarrow.Table
            Each finder's candidates (concatenated over tiles), in finder order.
        forced : callable or None
            ``forced(finder, ra, dec) -> scores`` (NaN where the finder cannot score).
        calibration : Calibration, path, mapping or None
            None uses this combiner's :meth:`default_calibration`.

        Returns
        -------
        pyarrow.Table
        """
        from clusterfw.core.evaluation.calibration import percentile, percentiles_for
        from clusterfw.core.evaluation.crossmatch import crossmatch
        from clusterfw.core.schema import (
            finder_flags_field,
            flag_bit,
            healpix29,
            plugin_field,
            schema_field,
            validate_candidates,
        )

        names = list(tables)
        if not names:
            raise PluginError(f"combiner {self.name!r} needs at least one finder table")
        cal = self.resolve_calibration(calibration)
        radius = float(self.options.radius_arcmin)  # type: ignore[attr-defined]

        cols = {n: _columns(t) for n, t in tables.items()}
        cm = crossmatch(
            {n: (c["ra"], c["dec"]) for n, c in cols.items()},
            radius,
            scores={n: c["score"] for n, c in cols.items()},
        )
        n_groups = len(cm)

        # 2. merged position: detecting finder with the best percentile of its own score
        det_pct = np.full((len(names), n_groups), -np.inf)
        for k, n in enumerate(names):
            m = cm.members[n]
            ok = m >= 0
            p = percentile(cols[n]["score"], cal.reference(n))
            det_pct[k, ok] = p[m[ok]]
        best = np.argmax(det_pct, axis=0) if n_groups else np.zeros(0, dtype=np.int64)
        ra = np.empty(n_groups)
        dec = np.empty(n_groups)
        for k, n in enumerate(names):
            sel = best == k
            idx = cm.members[n][sel]
            ra[sel] = cols[n]["ra"][idx]
            dec[sel] = cols[n]["dec"][idx]

        # 3. scores: own detection score, else forced at the merged position
        scores: dict[str, np.ndarray] = {}
        for n in names:
            m = cm.members[n]
            s = np.full(n_groups, np.nan)
            s[m >= 0] = cols[n]["score"][m[m >= 0]]
            miss = np.flatnonzero(m < 0)
            if miss.size and forced is not None:
                s[miss] = _forced(forced, n, ra[miss], dec[miss])
            scores[n] = s

        # 4. percentiles and 5. combined score / decision
        pct, in_sample = percentiles_for(scores, cal)
        covered = _coverage(forced, cm.members, names, ra, dec)
        if self.uses_coverage:
            # a finder whose layers have no data at a candidate has no say there: its
            # percentile is left out (NaN), not counted as a non-detection
            pct_used = {n: np.where(covered[n], pct[n], np.nan) for n in names}
        else:
            pct_used = pct
        detected = {n: cm.members[n] >= 0 for n in names}
        combined = self.combined_score_of(pct_used, scores, cal, detected=detected)
        decision, decision_info = self.decide(scores, combined, cal, in_sample, covered=covered)

        order = np.lexsort((np.arange(n_groups), -combined))
        fields: list[pa.Field] = []
        arrays: list[pa.Array] = []

        def add(f: pa.Field, arr: pa.Array) -> None:
            fields.append(f)
            arrays.append(arr)

        n_out = n_groups
        add(
            schema_field("candidate_id"),
            pa.array([f"{self.name}-{i:06d}" for i in range(n_out)], pa.string()),
        )
        add(schema_field("ra"), pa.array(ra[order] % 360.0, pa.float64()))
        add(schema_field("dec"), pa.array(dec[order], pa.float64()))
        add(schema_field("score"), pa.array(combined[order].astype(np.float32), pa.float32()))
        add(
            schema_field("score_kind"),
            pa.array([self.score_kind] * n_out, pa.string()).dictionary_encode(),
        )
        add(schema_field("finder"), pa.array([self.name] * n_out, pa.string()).dictionary_encode())
        add(schema_field("tile_id"), pa.array(np.full(n_out, -1, np.int32), pa.int32()))
        add(schema_field("healpix_29"), pa.array(healpix29(ra[order], dec[order]), pa.int64()))
        add(
            schema_field("flags"),
            pa.array(
                np.where(cm.n_merged[order] > 0, flag_bit("merged"), 0).astype(np.uint32),
                pa.uint32(),
            ),
        )
        isc = schema_field("is_cluster")
        if decision is None:
            add(isc, pa.nulls(n_out, pa.bool_()))
        else:
            add(isc, pa.array(np.asarray(decision, dtype=bool)[order], pa.bool_()))
        for n in names:
            m = cm.members[n][order]
            det = m >= 0
            kind = _score_kind(tables[n])
            s = scores[n][order]
            add(
                plugin_field(
                    f"{n}_score",
                    pa.float32(),
                    _score_unit(tables[n]),
                    f"Score of finder {n} ({kind}): its detection score where it detected "
                    "the candidate, else its forced score at the merged position; null "
                    "where it cannot score",
                ),
                pa.array(s.astype(np.float32), pa.float32(), mask=~np.isfinite(s)),
            )
            for coord in ("ra", "dec"):
                src = np.r_[cols[n][coord], np.nan]  # index -1 (not detected): NaN, also when
                v = src[np.where(det, m, -1)]  # the finder detected nothing at all
                add(
                    plugin_field(
                        f"{n}_{coord}",
                        pa.float64(),
                        "deg",
                        f"{coord.upper() if coord == 'ra' else 'Dec'} of finder {n}'s "
                        "detection (null where it did not detect the candidate)",
                        f"pos.eq.{coord}",
                    ),
                    pa.array(v, pa.float64(), mask=~det),
                )
            ids = cols[n]["candidate_id"]
            add(
                plugin_field(
                    f"{n}_candidate_id",
                    pa.string(),
                    "",
                    f"candidate_id of finder {n}'s detection (null where it did not "
                    "detect the candidate)",
                    "meta.id",
                ),
                pa.array([ids[j] if j >= 0 else None for j in m], pa.string()),
            )
            add(
                plugin_field(
                    f"{n}_percentile",
                    pa.float32(),
                    "",
                    f"Rank percentile of {n}_score under the reference distribution "
                    "(calibration) or, failing that, within this table",
                ),
                pa.array(pct[n][order].astype(np.float32), pa.float32()),
            )
            if "flags" in tables[n].column_names:
                col = tables[n].column("flags")
                fl = np.r_[col.fill_null(0).to_numpy().astype(np.uint32), np.uint32(0)]
                has = np.r_[col.is_valid().to_numpy(zero_copy_only=False), False]
                j = np.where(det, m, fl.size - 1)
                add(finder_flags_field(n), pa.array(fl[j], pa.uint32(), mask=~has[j]))
            if f"{n}_z" in tables[n].column_names:  # a finder's redshift (an optical photo-z)
                zcol = tables[n].column(f"{n}_z").cast(pa.float64()).fill_null(np.nan)
                zv = np.r_[zcol.to_numpy(zero_copy_only=False), np.nan]
                zj = zv[np.where(det, m, zv.size - 1)]  # with its detection; null elsewhere
                zf = tables[n].schema.field(f"{n}_z").with_type(pa.float64())
                add(zf, pa.array(zj, pa.float64(), mask=~np.isfinite(zj)))
        n_det = np.sum([cm.members[n][order] >= 0 for n in names], axis=0).astype(np.int32)
        add(
            plugin_field(
                f"{self.name}_n_detected",
                pa.int32(),
                "",
                "Number of finders that detected the candidate (the others gave a forced score)",
            ),
            pa.array(np.atleast_1d(n_det) if n_out else np.zeros(0, np.int32), pa.int32()),
        )

        info = {
            "name": self.name,
            "version": self.version,
            "finders": names,
            "radius_arcmin": radius,
            "score": self.score_description,
            "calibration": cal.source,
            "percentiles": {n: ("in-sample" if n in in_sample else "reference") for n in names},
            "forced_scoring": forced is not None,
            **decision_info,
        }
        schema = pa.schema(
            fields,
            metadata={b"clusterfw.combiner": json.dumps(info, default=_json_default).encode()},
        )
        table = pa.Table.from_arrays(arrays, schema=schema)
        validate_candidates(table, prefixes=(self.name, *names))
        return table


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    raise TypeError(type(obj).__name__)


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    for need in ("ra", "dec", "score"):
        if need not in table.column_names:
            raise PluginError(f"finder table lacks column {need!r}")
    n = table.num_rows
    ids = (
        table.column("candidate_id").to_pylist()
        if "candidate_id" in table.column_names
        else [f"row-{i}" for i in range(n)]
    )
    return {
        "ra": table.column("ra").to_numpy(zero_copy_only=False).astype(np.float64),
        "dec": table.column("dec").to_numpy(zero_copy_only=False).astype(np.float64),
        "score": np.asarray(table.column("score").to_numpy(zero_copy_only=False), dtype=np.float64),
        "candidate_id": np.asarray(ids, dtype=object),
    }


def _score_kind(table: pa.Table) -> str:
    if "score_kind" in table.column_names and table.num_rows:
        kinds = {str(k) for k in table.column("score_kind").to_pylist()}
        return ",".join(sorted(kinds))
    return "score"


def _score_unit(table: pa.Table) -> str:
    if "score" in table.column_names:
        meta = table.schema.field("score").metadata or {}
        return meta.get(b"unit", b"").decode()
    return ""


def _coverage(
    forced: ForcedScorer | None,
    members: Mapping[str, np.ndarray],
    names: list[str],
    ra: np.ndarray,
    dec: np.ndarray,
) -> dict[str, np.ndarray]:
    """Whether each finder covers each merged candidate.

    A finder that detected a candidate covers it; elsewhere the run's forced scorer says (its
    ``coverage(finder, ra, dec)`` method, when it has one); without one, everything is covered.
    """
    coverage_of = getattr(forced, "coverage", None)
    out = {}
    for n in names:
        c = np.ones(ra.size, dtype=bool)
        miss = np.flatnonzero(members[n] < 0)
        if coverage_of is not None and miss.size:
            c[miss] = np.asarray(coverage_of(n, ra[miss], dec[miss]), dtype=bool)
        out[n] = c
    return out


def _forced(forced: ForcedScorer, name: str, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    try:
        out = np.asarray(forced(name, ra, dec), dtype=np.float64)
    except ForcedScoringUnsupported:
        return np.full(ra.size, np.nan)
    if out.shape != ra.shape:
        raise PluginError(
            f"forced scorer returned {out.shape} scores for {ra.size} positions of finder {name!r}"
        )
    return out


def warn_uncalibrated(combiner: str, what: str) -> None:
    """Warn that ``is_cluster`` is left null."""
    from clusterfw.core.evaluation.calibration import CalibrationWarning

    warnings.warn(
        f"{combiner}: {what}; is_cluster left null (make thresholds with `clusterfw calibrate`)",
        CalibrationWarning,
        stacklevel=4,
    )
