"""A simulated universe: one halo catalogue seen by several instruments (mm, optical, X-ray, y).

:func:`simulate_universe` samples the halos of a patch exactly as the millimetre simulator does
(the same seed gives the same halos, the same ``Y500`` and so the same mm maps as
``clusterfw simulate mm``), draws each halo's correlated observables
(:mod:`clusterfw.sim.observables`), and renders the requested layers from that one catalogue:

* ``mm`` — :func:`clusterfw.sim.patch.simulate_patch` with the universe's patch config;
* ``optical`` — :func:`clusterfw.sim.optical.render_optical` (galaxies of every halo, richness
  from the catalogue);
* ``xray`` — :func:`clusterfw.sim.xray.render_xray` (0.5–2 keV counts, exposure, background);
* ``ymap`` — :func:`clusterfw.sim.ymap.render_ymap` (Compton-y with a survey's beam and noise,
  plus the toy stellar-mass map).

Randomness: ``numpy.random.default_rng(seed)`` is split exactly as in ``simulate_patch`` (its
twelve component streams: the halos), then four more children feed the observables and the
X-ray, y and optical layers. Rendering one layer again from the written catalogue
(:func:`render_layer`) with the same seed reproduces that layer bit for bit.

:func:`write_universe` writes ``DIR/{mm,optical,xray,ymap,stellar_mass}/`` (every file of
which is an input layer: ``clusterfw run DIR/*/*.fits`` reads them all),
``DIR/truth_ymap.fits`` (the unsmoothed y of the mm layer), ``DIR/truth_halos.parquet`` (every
observable, units in the field metadata) plus ``DIR/universe.json``, all into a temporary
sibling folder renamed to ``DIR`` at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clusterfw.core.errors import ClusterfwError, InputError
from clusterfw.core.schema import plugin_field
from clusterfw.sim.config import PatchConfig
from clusterfw.sim.footprint import Footprint
from clusterfw.sim.observables import ObservablesConfig, draw_observables
from clusterfw.sim.truth import OBSERVABLE_COLUMNS, SIM_VERSION, halo_table, sim_metadata

LAYERS = ("mm", "optical", "xray", "ymap")
LAYER_STREAMS = ("observables", "xray", "ymap", "optical")
UNIVERSE_KEY = b"clusterfw.universe_config"
FOOTPRINT_KEY = b"clusterfw.footprint"


class UniverseConfig(BaseModel):
    """Everything a universe needs besides the seed.

    Attributes
    ----------
    patch : PatchConfig
        Geometry (size, centre, projection), halo and mm physics; its ``y500_scatter_ln`` is
        ``σ_lnY`` of the observables.
    observables : ObservablesConfig
    layers : list of str
        Subset of ``mm``, ``optical``, ``xray``, ``ymap``.
    xray_preset, ymap_preset, optical_preset : str
    optical_bands : list of str
    """

    model_config = ConfigDict(extra="forbid")

    patch: PatchConfig = Field(default_factory=lambda: PatchConfig(size_deg=1.0))
    observables: ObservablesConfig = Field(default_factory=ObservablesConfig)
    layers: list[str] = Field(default_factory=lambda: ["mm", "xray", "ymap"])
    xray_preset: str = "erosita"
    ymap_preset: str = "act"
    optical_preset: str = "des"
    optical_bands: list[str] = Field(default_factory=lambda: ["g", "r", "i"])

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[str]) -> list[str]:
        bad = [x for x in value if x not in LAYERS]
        if bad:
            raise ValueError(f"unknown layer {bad[0]!r} (choose from {', '.join(LAYERS)})")
        if not value:
            raise ValueError("no layer requested")
        return [x for x in LAYERS if x in value]  # canonical order, no duplicates


@dataclass
class Universe:
    """The result of :func:`simulate_universe`: the halo truth and the rendered layers."""

    config: UniverseConfig
    seed: int
    footprint: Footprint
    halos: pa.Table
    layers: dict[str, Any] = field(default_factory=dict)


def universe_streams(
    seed: int,
) -> tuple[dict[str, np.random.Generator], dict[str, np.random.Generator]]:
    """The mm simulator's component streams and the universe's layer streams for ``seed``."""
    from clusterfw.sim.patch import spawn_streams

    rng = np.random.default_rng(int(seed))
    patch_streams = spawn_streams(rng)
    layer = dict(zip(LAYER_STREAMS, rng.spawn(len(LAYER_STREAMS)), strict=True))
    return patch_streams, layer


def _universe_metadata(config: UniverseConfig, seed: int, fp: Footprint) -> dict[bytes, bytes]:
    meta = sim_metadata(config.patch.model_dump_json(), seed, "halos")
    meta[UNIVERSE_KEY] = config.model_dump_json().encode()
    meta[FOOTPRINT_KEY] = json.dumps(fp.to_dict()).encode()
    return meta


def add_observable_columns(table: pa.Table, obs: dict[str, np.ndarray]) -> pa.Table:
    """Append (or replace) the :data:`OBSERVABLE_COLUMNS` of ``obs`` to a halo table."""
    for name, (dtype, unit, desc, ucd) in OBSERVABLE_COLUMNS.items():
        arr = pa.array(np.asarray(obs[name]), type=dtype)
        fld = plugin_field(name, dtype, unit, desc, ucd)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), fld, arr)
        else:
            table = table.append_column(fld, arr)
    return table


def sample_universe_halos(config: UniverseConfig, seed: int) -> tuple[pa.Table, Footprint]:
    """The halo truth of a universe (the mm simulator's halos plus every observable)."""
    from clusterfw.sim.instrument import ARCMIN
    from clusterfw.sim.patch import patch_wcs, sample_halo_catalogue

    cfg = config.patch
    patch_streams, layer = universe_streams(seed)
    ny, nx = cfg.shape
    pix = cfg.pixel_arcmin
    area_sr = ny * nx * (pix * ARCMIN) ** 2
    halos = sample_halo_catalogue(cfg, patch_streams, area_sr, nx, ny, pix)
    ra, dec = patch_wcs(cfg).pixel_to_world_values(halos["x_pix"], halos["y_pix"])
    halos["ra"], halos["dec"] = np.asarray(ra) % 360.0, np.asarray(dec)
    fp = Footprint.from_patch_config(cfg)
    table = halo_table(halos, _universe_metadata(config, seed, fp))
    obs = draw_observables(halos, cfg.y500_scatter_ln, config.observables, layer["observables"])
    return add_observable_columns(table, obs), fp


def _optical_module() -> Any:
    try:
        import clusterfw.sim.optical as optical
    except ImportError as exc:
        raise ClusterfwError(
            f"--layers: the optical renderer (clusterfw.sim.optical) is not available: {exc}"
        ) from None
    if not hasattr(optical, "render_optical"):
        raise ClusterfwError(
            "--layers: the optical renderer (clusterfw.sim.optical.render_optical) is not "
            "available yet"
        )
    return optical


def _render(
    layer: str,
    halos: pa.Table,
    fp: Footprint,
    config: UniverseConfig,
    rng: np.random.Generator,
) -> Any:
    if layer == "xray":
        from clusterfw.sim.xray import render_xray

        return render_xray(halos, fp, config.xray_preset, rng)
    if layer == "ymap":
        from clusterfw.sim.ymap import render_ymap

        return render_ymap(halos, fp, config.ymap_preset, rng)
    if layer == "optical":
        optical = _optical_module()
        return optical.render_optical(
            halos, fp, config.optical_preset, rng, bands=tuple(config.optical_bands)
        )
    raise ValueError(layer)


def simulate_universe(config: UniverseConfig | None = None, seed: int = 0) -> Universe:
    """Sample one halo catalogue and render every requested layer from it.

    Parameters
    ----------
    config : UniverseConfig, optional
        Default: a 1°×1° patch, layers mm, xray, ymap.
    seed : int
        The single seed: same seed, bit-identical universe.

    Returns
    -------
    Universe

    Examples
    --------
    >>> from clusterfw.sim.universe import UniverseConfig, simulate_universe
    >>> from clusterfw.sim.config import PatchConfig
    >>> u = simulate_universe(UniverseConfig(patch=PatchConfig(size_deg=0.25), layers=["xray"]), 1)
    >>> sorted(u.layers)
    ['xray']
    """
    cfg = config if config is not None else UniverseConfig()
    if "optical" in cfg.layers:
        _optical_module()  # fail before any work
    seed = int(seed)
    halos, fp = sample_universe_halos(cfg, seed)
    _, layer_rngs = universe_streams(seed)
    out = Universe(cfg, seed, fp, halos)
    for layer in cfg.layers:
        if layer == "mm":
            from clusterfw.sim.patch import simulate_patch

            res = simulate_patch(cfg.patch, seed)
            mine = halos.column("y500").to_numpy()
            theirs = res.halos.column("y500").to_numpy()
            if mine.shape != theirs.shape or not np.array_equal(mine, theirs):
                raise RuntimeError("mm simulator drew different halos than the universe")
            out.layers["mm"] = res
        else:
            out.layers[layer] = _render(layer, halos, fp, cfg, layer_rngs[layer])
    return out


def check_out_dir(out: str | Path, option: str = "--out") -> Path:
    """Refuse an output folder that exists and is not empty (one-line error, nothing written)."""
    path = Path(out)
    if path.exists():
        if not path.is_dir():
            raise ClusterfwError(f"{option}: {path} exists and is not a directory")
        if any(path.iterdir()):
            raise ClusterfwError(f"{option}: {path} exists and is not empty (nothing overwritten)")
    return path


def _write_layer(layer: str, obj: Any, tmp: Path, flat: bool = False) -> list[Path]:
    """Write one layer under ``tmp/<layer>/`` (or straight into ``tmp`` when ``flat``)."""
    here = tmp if flat else tmp / layer
    if layer == "mm":
        from clusterfw.sim.patch import write_patch

        w = write_patch(obj, here, prefix="mm")
        ymap = w["ymap"]
        if ymap and not flat:
            # the unsmoothed truth y map is not an input layer: keep it out of mm/, so that
            # `clusterfw run DIR/*/*.fits` reads every layer and nothing else
            ymap = Path(ymap).rename(tmp / "truth_ymap.fits")
        return [*w["maps"], w["halos"], w["sources"], *([ymap] if ymap else [])]
    if layer == "xray":
        from clusterfw.sim.xray import write_xray

        return list(write_xray(obj, here).values())
    if layer == "ymap":
        from clusterfw.sim.ymap import write_stellar_mass, write_ymap

        paths: list[Path] = [p for p in write_ymap(obj, here).values() if p]
        sm = write_stellar_mass(obj, tmp / "stellar_mass")
        return paths + ([sm] if sm else [])
    if layer == "optical":
        optical = _optical_module()
        return [Path(p) for p in optical.write_optical(obj, here, "optical")]
    raise ValueError(layer)


def _into_place(out: Path, build: Any) -> Path:
    """Run ``build(tmp_dir)`` in a temporary sibling of ``out`` and rename it to ``out``."""
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _relative(paths: list[Path], root: Path) -> list[str]:
    return [str(Path(p).relative_to(root)) for p in paths]


def write_universe(universe: Universe, out: str | Path) -> dict[str, Any]:
    """Write every layer, ``truth_halos.parquet`` and ``universe.json`` to ``out`` atomically.

    Parameters
    ----------
    universe : Universe
    out : str or Path
        Must not exist, or be an empty folder.

    Returns
    -------
    dict
        ``directory``, ``halos`` and ``layers`` (layer name → list of written paths).
    """
    from clusterfw.core.catalog_io import write_table_atomic

    out = Path(out)
    written: dict[str, list[str]] = {}

    def build(tmp: Path) -> None:
        write_table_atomic(universe.halos, tmp / "truth_halos.parquet")
        for layer, obj in universe.layers.items():
            written[layer] = _relative(_write_layer(layer, obj, tmp), tmp)
        manifest = {
            "seed": universe.seed,
            "sim_version": SIM_VERSION,
            "footprint": universe.footprint.to_dict(),
            "layers": written,
            "halos": "truth_halos.parquet",
            "config": json.loads(universe.config.model_dump_json()),
        }
        (tmp / "universe.json").write_text(json.dumps(manifest, indent=1) + "\n")

    _into_place(out, build)
    return {
        "directory": out,
        "halos": out / "truth_halos.parquet",
        "layers": {k: [out / p for p in v] for k, v in written.items()},
    }


# --- one layer from an existing catalogue ---------------------------------------------------


def read_halos(path: str | Path) -> tuple[pa.Table, Footprint, UniverseConfig, int | None]:
    """Read a halo truth table and recover its footprint, universe config and seed.

    Works on a universe's ``truth_halos.parquet`` and on an mm simulation's (``simulate mm``):
    the footprint comes from the stored patch config.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "no such file")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for non-Parquet input
        raise InputError(str(path), f"not a Parquet table ({type(exc).__name__})") from None
    need = ("ra", "dec", "z", "m500c", "theta500_arcmin")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise InputError(str(path), f"missing halo column(s) {', '.join(missing)}")
    meta = table.schema.metadata or {}
    seed = None
    if b"clusterfw.sim_seed" in meta:
        seed = json.loads(meta[b"clusterfw.sim_seed"])
    if UNIVERSE_KEY in meta:
        config = UniverseConfig.model_validate_json(meta[UNIVERSE_KEY])
    elif b"clusterfw.sim_config" in meta:
        patch_fields = json.loads(meta[b"clusterfw.sim_config"])
        try:
            config = UniverseConfig(patch=PatchConfig(**patch_fields))
        except Exception:
            raise InputError(str(path), "stored simulation config is not a flat patch") from None
    else:
        raise InputError(str(path), "no clusterfw simulation metadata (footprint unknown)")
    if FOOTPRINT_KEY in meta:
        fp = Footprint(**json.loads(meta[FOOTPRINT_KEY]))
    else:
        fp = Footprint.from_patch_config(config.patch)
    return table, fp, config, seed


def ensure_observables(table: pa.Table, config: UniverseConfig, seed: int) -> pa.Table:
    """Add the observables to a plain mm halo table (drawn with the universe's stream)."""
    if all(name in table.column_names for name in OBSERVABLE_COLUMNS):
        return table
    need = ("m500c", "m200c", "z", "t_kev", "y500", "y500_median")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise ClusterfwError(f"--halos: cannot draw observables, missing {', '.join(missing)}")
    halos = {c: table.column(c).to_numpy() for c in need}
    _, layer = universe_streams(seed)
    obs = draw_observables(
        halos, config.patch.y500_scatter_ln, config.observables, layer["observables"]
    )
    return add_observable_columns(table, obs)


def render_layer(
    layer: str,
    halos_path: str | Path,
    out: str | Path,
    *,
    seed: int | None = None,
    preset: str | None = None,
    bands: list[str] | None = None,
) -> dict[str, Any]:
    """Render one layer (``xray``, ``ymap`` or ``optical``) for an existing halo catalogue.

    Parameters
    ----------
    layer : str
    halos_path : str or Path
        A ``truth_halos.parquet`` of ``simulate universe`` or ``simulate mm``.
    out : str or Path
        Output folder (must not exist or be empty); written atomically.
    seed : int, optional
        Default: the catalogue's own seed, which reproduces the universe's layer bit for bit.
    preset : str, optional
        Survey preset (default: the universe's).
    bands : list of str, optional
        Optical bands.

    Returns
    -------
    dict
        ``directory`` and ``files``.
    """
    if layer not in ("xray", "ymap", "optical"):
        raise ClusterfwError(f"layer: {layer!r} cannot be rendered alone (xray, ymap, optical)")
    check_out_dir(out)
    table, fp, config, stored_seed = read_halos(halos_path)
    use_seed = seed if seed is not None else (stored_seed if stored_seed is not None else 0)
    updates: dict[str, Any] = {"layers": [layer]}
    if preset is not None:
        updates[f"{layer}_preset"] = preset
    if bands is not None:
        updates["optical_bands"] = list(bands)
    config = config.model_copy(update=updates)
    _validate_presets(config)
    table = ensure_observables(table, config, int(use_seed))
    _, layer_rngs = universe_streams(int(use_seed))
    obj = _render(layer, table, fp, config, layer_rngs[layer])
    files: list[str] = []

    def build(tmp: Path) -> None:
        files.extend(_relative(_write_layer(layer, obj, tmp, flat=True), tmp))

    out = _into_place(Path(out), build)
    return {"directory": out, "files": [out / f for f in files]}


def _validate_presets(config: UniverseConfig) -> None:
    from clusterfw.sim import xray, ymap

    if "xray" in config.layers:
        xray.get_preset(config.xray_preset)
    if "ymap" in config.layers:
        ymap.get_preset(config.ymap_preset)
    if "optical" in config.layers:
        optical = _optical_module()
        getter = getattr(optical, "get_preset", None)
        if getter is not None:
            try:
                preset = getter(config.optical_preset)
                for band in config.optical_bands:
                    preset.band(band)
            except ClusterfwError:
                raise
            except Exception as exc:
                raise ClusterfwError(f"--bands: {exc}") from None


# --- demo -----------------------------------------------------------------------------------

DEMO_UNIVERSE_SEED = 2024
DEMO_UNIVERSE_VERSION = "1"


def demo_universe_config(layers: list[str] | None = None) -> UniverseConfig:
    """The demo universe: 1°×1° at (60°, −45°), all default presets."""
    chosen = layers or ["mm", "optical", "xray", "ymap"]
    return UniverseConfig(
        patch=PatchConfig(size_deg=1.0, pixel_arcmin=0.25, ra_deg=60.0, dec_deg=-45.0),
        layers=chosen,
    )


def demo_universe(regenerate: bool = False) -> dict[str, Any]:
    """Paths of the cached demo universe, simulating and writing it on first use.

    The folder is ``<cache>/universe-v<version>-<layers>/`` (``<cache>`` as for
    :func:`clusterfw.sim.demo.cache_dir`). The optical layer is included when the optical
    renderer is installed.

    Returns
    -------
    dict
        ``directory``, ``halos`` (truth Parquet), ``manifest`` (universe.json) and ``layers``
        (layer → list of paths).
    """
    from clusterfw.sim.demo import cache_dir

    layers = ["mm", "xray", "ymap"]
    try:
        _optical_module()
        layers.insert(1, "optical")
    except ClusterfwError:
        pass
    root = cache_dir()
    target = root / f"universe-v{SIM_VERSION}.{DEMO_UNIVERSE_VERSION}-{'-'.join(layers)}"
    manifest = target / "universe.json"
    if regenerate or not manifest.is_file():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".universe-", dir=root))
        try:
            uni = simulate_universe(demo_universe_config(layers), DEMO_UNIVERSE_SEED)
            write_universe(uni, staging / "u")
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(staging / "u", target)
            except OSError:  # another process won the race; use its copy
                pass
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    info = json.loads(manifest.read_text())
    return {
        "directory": target,
        "halos": target / info["halos"],
        "manifest": manifest,
        "layers": {k: [target / p for p in v] for k, v in info["layers"].items()},
    }
