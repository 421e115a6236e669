"""Abstract base classes that plugin objects implement.

A plugin registers *classes* (through the hooks in :mod:`clusterfw.core.hookspecs`); the
pipeline instantiates them with validated options. Each class declares:

- ``name``: the name users type (``--finder mf``), also the prefix of its own columns;
- ``version``: a version string recorded in provenance;
- ``Options``: a pydantic model; ``-o name.key=value`` on the CLI is validated against it.

Heavy dependencies (torch, TensorFlow) must be imported inside methods, never at module level,
so that discovery stays fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from clusterfw.core.errors import ForcedScoringUnsupported, PluginError
from clusterfw.core.layers.requirements import LayerRequirement

if TYPE_CHECKING:
    from clusterfw.core.evaluation.calibration import Calibration, ValidationSet
    from clusterfw.core.pipeline import CutoutProvider
    from clusterfw.core.sky import HealpixSky, Sky, Tile


class PluginOptions(BaseModel):
    """Base class of plugin options: unknown keys are errors, values are type-checked."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _Plugin:
    name: ClassVar[str]
    version: ClassVar[str] = "0"
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, options: PluginOptions | Mapping[str, Any] | None = None) -> None:
        """Validate ``options`` (``None``, a mapping or an ``Options`` instance).

        Raises
        ------
        clusterfw.core.errors.PluginError
            ``bad option for <kind> '<name>': <name>.<key>: <problem>`` on one line.
        """
        try:
            if options is None:
                options = self.Options()
            elif not isinstance(options, PluginOptions):
                options = self.Options(**dict(options))
        except ValidationError as exc:
            raise PluginError(bad_options_message(type(self), exc)) from None
        self.options = options


def plugin_kind(cls: type) -> str:
    """``"finder"``, ``"combiner"``, ``"estimator"`` or ``"reader"`` (``"plugin"`` otherwise)."""
    for kind, base in PLUGIN_KINDS.items():
        if issubclass(cls, base):
            return kind
    return "plugin"


def bad_options_message(cls: type, exc: ValidationError) -> str:
    """One line naming the plugin and every bad option (``peak.threshold: ...``)."""
    name = getattr(cls, "name", cls.__name__)
    problems = "; ".join(
        f"{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return f"bad option for {plugin_kind(cls)} {name!r}: {problems}"


class Finder(_Plugin, ABC):
    """Finds cluster candidates in a tile.

    Subclasses set ``score_kind`` (e.g. ``"snr"``), ``margin_arcmin`` (the tile margin the
    method needs so that candidates in the core are unaffected by the tile edge) and
    ``requires``: the survey layers it reads, as
    :class:`~clusterfw.core.layers.requirements.LayerRequirement` (default: one ``mm`` layer,
    the finder reads ``tile.maps``). A run whose inputs lack them fails before any work; the
    finder's tiles carry only these layers (``tile.layers``, ``tile.layer(kind)``), each read
    with ``margin_arcmin`` around the core at its own resolution.
    """

    score_kind: ClassVar[str] = "score"
    margin_arcmin: ClassVar[float] = 10.0
    requires: ClassVar[Sequence[LayerRequirement]] = (LayerRequirement("mm"),)

    @abstractmethod
    def find(self, tile: Tile) -> pa.Table:
        """Return candidates whose positions lie in ``tile``'s core.

        Parameters
        ----------
        tile : Tile

        Returns
        -------
        pyarrow.Table
            Built with :func:`clusterfw.core.schema.candidate_table`.
        """

    def score_at(self, tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Score arbitrary positions in ``tile`` (forced scoring).

        The default says the finder cannot do it; finders that can override this. Returns one
        float per position, on the same scale as ``score`` in :meth:`find`.
        """
        raise ForcedScoringUnsupported(f"finder {self.name!r} does not support forced scoring")

    @classmethod
    def supports_forced_scoring(cls) -> bool:
        """Whether :meth:`score_at` is implemented."""
        return cls.score_at is not Finder.score_at


ForcedScorer = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
"""``forced(finder_name, ra, dec) -> scores``: a finder's score at given positions (NaN where
it cannot score)."""


class Combiner(_Plugin, ABC):
    """Merges the candidate tables of several finders into one.

    A combiner owns its maths, its calibration and its default calibration:

    - :meth:`combine` merges the finders' tables (required);
    - :meth:`calibrate` says how ``clusterfw calibrate`` picks its thresholds on validation
      skies and returns the combiner's own section of the calibration file (optional: the
      default returns ``None``, nothing to calibrate);
    - :meth:`default_calibration` is the calibration ``clusterfw run`` uses when the user gives
      none (optional: the default is ``None``, no default);
    - :meth:`resolve_calibration` turns what :meth:`combine` receives (``None``, a path, a
      :class:`~clusterfw.core.evaluation.calibration.Calibration`) into a ``Calibration``.
    """

    @abstractmethod
    def combine(
        self,
        tables: Mapping[str, pa.Table],
        forced: ForcedScorer | None,
        calibration: Any | None = None,
    ) -> pa.Table:
        """Combine per-finder tables.

        Parameters
        ----------
        tables : mapping of str to pyarrow.Table
            Candidates of each finder, keyed by finder name.
        forced : callable or None
            Forced scorer giving any finder's score at any position.
        calibration : Calibration, path or None
            Thresholds and reference score distributions (see ``clusterfw calibrate``); pass it
            through :meth:`resolve_calibration`.

        Returns
        -------
        pyarrow.Table
            One candidate table: the required columns (``finder`` = the combiner's name,
            ``tile_id`` = -1), the combined score as ``score``, and ``<finder>_score`` for every
            input finder (``<finder>_ra``/``<finder>_dec`` too for ``clusterfw evaluate`` and
            ``clusterfw calibrate`` to recognise it as a combined catalogue).
        """

    def calibrate(
        self, validation: Sequence[ValidationSet], reference: Calibration
    ) -> dict[str, Any] | None:
        """This combiner's section of a calibration file, made on validation skies.

        Called by ``clusterfw calibrate`` (:func:`clusterfw.core.evaluation.calibration.calibrate`)
        for every installed combiner.

        Parameters
        ----------
        validation : sequence of ValidationSet
            One per finder set found among the combined validation catalogues: each finder's
            score per candidate, pooled over skies and matched to truth.
        reference : Calibration
            The per-finder part already made (thresholds and reference distributions).

        Returns
        -------
        dict or None
            A JSON-ready mapping stored as ``combiners.<name>`` and given back to
            :meth:`combine` through :meth:`Calibration.section`; ``None`` when there is nothing
            to calibrate (the default).
        """
        return None

    @classmethod
    def default_calibration(cls) -> Calibration | None:
        """The calibration used when a run gives none (default: ``None``, no default)."""
        return None

    @classmethod
    def describe_section(cls, section: Any) -> list[str]:
        """Lines ``clusterfw info calib.json`` prints for this combiner's section (optional).

        The default is none: ``info`` then prints only the one-line summary of
        :func:`~clusterfw.core.evaluation.calibration.calibration_summary`.
        """
        return []

    def resolve_calibration(self, calibration: Any | None) -> Calibration:
        """The :class:`Calibration` to use for ``calibration`` as given to :meth:`combine`.

        ``None`` and the placeholder of :func:`~clusterfw.core.evaluation.calibration.
        default_calibration` become this combiner's :meth:`default_calibration` (an empty
        calibration when it has none); a path is loaded; a ``Calibration`` is returned as is.
        """
        from clusterfw.core.evaluation.calibration import Calibration

        cal = Calibration.coerce(calibration)
        if cal.is_default_placeholder:
            own = type(self).default_calibration()
            return own if own is not None else Calibration(source="empty")
        return cal


class Estimator(_Plugin, ABC):
    """Adds columns (masses, redshifts, flags ...) to a candidate table.

    ``columns`` lists the fields it adds; each name starts with ``<name>_``. ``requires``
    lists the layers it reads (default: none); a run whose inputs lack them fails before any
    work.
    """

    columns: ClassVar[Sequence[pa.Field]] = ()
    requires: ClassVar[Sequence[LayerRequirement]] = ()

    @abstractmethod
    def estimate(self, table: pa.Table, sky: Sky | HealpixSky | CutoutProvider) -> pa.Table:
        """Return ``table`` with this estimator's ``columns`` appended.

        Parameters
        ----------
        table : pyarrow.Table
            The candidates.
        sky : CutoutProvider, Sky or HealpixSky
            For a run on files, a :class:`~clusterfw.core.pipeline.CutoutProvider`: call
            ``sky.cutout(layer, ra, dec, size_arcmin)`` for a
            :class:`~clusterfw.core.layers.cutout.LayerCutout` of a layer (name or kind)
            around a candidate; only the pixels of that cutout are read. For a sky held in
            memory (tests, simulations), that sky.
        """


class Reader(_Plugin, ABC):
    """Reads mm input files into a :class:`~clusterfw.core.sky.Sky` or ``HealpixSky``.

    ``clusterfw run`` gives a reader the files the layer readers place in the ``mm`` kind
    (or cannot place). A reader may also offer ``read_layer(paths, overrides) -> (Layer,
    inputs)``: the same checks, but an ``mm`` :class:`~clusterfw.core.layers.model.Layer`
    whose pixels stay on disk and a tuple of :class:`~clusterfw.core.sky.InputFile`; the run
    then reads the pixels per tile job (the built-in ``fits`` and ``healpix`` readers do). A
    reader without it holds the maps in memory, and cannot be combined with other layers.
    """

    description: ClassVar[str] = ""

    @abstractmethod
    def can_read(self, paths: Sequence[Path]) -> bool:
        """Whether these files are in this reader's format (cheap: look at headers only)."""

    @abstractmethod
    def read(self, paths: Sequence[Path], overrides: Mapping[str, Any]) -> Sky | HealpixSky:
        """Read the files.

        Parameters
        ----------
        paths : sequence of Path
            One file per band.
        overrides : mapping
            Band facts from the command line (``freq``, ``beam``, ``bunit``, ``noise``), each a
            list with one value per file, or absent.

        Raises
        ------
        clusterfw.core.errors.InputError
            Naming the file and the problem.
        """


PLUGIN_KINDS: dict[str, type[_Plugin]] = {
    "finder": Finder,
    "combiner": Combiner,
    "estimator": Estimator,
    "reader": Reader,
}
