"""``clusterfw simulate``: the simulator's command-line interface (heavy imports stay lazy)."""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import click

from clusterfw.core.cli import FiniteFloat

#: Largest flat patch, in pixels (a 29.5 deg square at 0.25'), and largest HEALPix Nside:
#: beyond these a simulation needs tens of GiB and hours. HEALPix bands are simulated and
#: written one at a time (Nside 4096: roughly 16 GB of memory, 2.4 GB of maps).
MAX_PATCH_PIXELS = 50_000_000
MAX_NSIDE = 4096
#: Largest cutout count and shard volume (cutouts x side^2) of ``simulate cutouts``.
MAX_CUTOUTS = 10_000_000
MAX_SHARD_PIXELS = 100_000_000

#: Named settings of clusterfw.sim.settings (kept literal so the CLI imports stay light).
SETTING_NAMES = ("default", "randomised", "battaglia_hiradio")
_SETTING_HELP = (
    "Named simulator setting: default (today's), randomised (training mixture: profile family, "
    "Y-M, sources, noise, beams drawn from the seed) or battaglia_hiradio (held out)."
)

_COMPONENTS = (
    "cmb",
    "tsz",
    "ksz",
    "radio",
    "dusty",
    "cluster_sources",
    "unresolved_sources",
    "cib_clustered",
    "galactic_dust",
    "noise",
    "one_over_f",
    "scan_filter",
)


def _components(enable: tuple[str, ...], disable: tuple[str, ...]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for names, value in ((enable, True), (disable, False)):
        for item in names:
            for name in item.split(","):
                name = name.strip().replace("-", "_")
                if not name:
                    continue
                if name not in _COMPONENTS:
                    raise click.BadParameter(
                        f"unknown component {name!r} (choose from {', '.join(_COMPONENTS)})"
                    )
                out[name] = value
    return out


def _load_config(path: Path | None) -> dict[str, Any]:
    """The ``--config`` JSON object (empty without one); one-line errors naming the file."""
    from clusterfw.core.errors import InputError

    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read ({exc})") from None
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            str(path), f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(fields, dict):
        raise InputError(str(path), "must hold a JSON object of simulation parameters")
    return fields


def _sim_output(prefix: str) -> Any:
    """Which entries of an existing ``--out`` folder an earlier ``simulate mm`` wrote."""
    pattern = re.compile(rf"^(?:{re.escape(prefix)}_[^/]+\.fits|truth_\w+\.(?:parquet|fits))$")

    def keep(entry: Path) -> bool:
        return entry.is_file() and bool(pattern.match(entry.name))

    return keep


def _check_patch(cfg: Any) -> None:
    """Refuse non-finite or absurd patch geometry (from flags or the config file)."""
    from clusterfw.core.errors import ClusterfwError

    for name in ("size_deg", "height_deg", "pixel_arcmin", "ra_deg", "dec_deg"):
        value = getattr(cfg, name)
        if value is not None and not math.isfinite(value):
            raise ClusterfwError(f"bad simulation parameter {name}: must be finite, got {value}")
    ny, nx = cfg.shape
    if ny * nx > MAX_PATCH_PIXELS:
        raise ClusterfwError(
            f"--size: a {cfg.size_deg:g} x {cfg.height_deg or cfg.size_deg:g} deg patch at "
            f"{cfg.pixel_arcmin:g}' is {ny} x {nx} pixels (at most {MAX_PATCH_PIXELS})"
        )


def _write_streamed(cfg: Any, directory: Path, prefix: str, seed: int) -> dict:
    from clusterfw.sim.healpix import simulate_healpix_to

    return simulate_healpix_to(cfg, seed, directory, prefix)


def _check_nside(nside: int) -> None:
    from clusterfw.core.errors import ClusterfwError

    if nside < 1 or nside & (nside - 1) or nside > MAX_NSIDE:
        raise ClusterfwError(
            f"--healpix-nside: must be a power of 2 between 16 and {MAX_NSIDE}, got {nside}"
        )


@click.group("simulate")
def simulate() -> None:
    """Simulate skies with truth catalogues (millimetre: ``mm``; training cutouts: ``cutouts``)."""


@simulate.command("mm")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (created).",
)
@click.option(
    "--size",
    type=FiniteFloat(min=0.0, min_open=True, max=180.0),
    default=2.0,
    show_default=True,
    help="Patch width, degrees.",
)
@click.option(
    "--height",
    type=FiniteFloat(min=0.0, min_open=True, max=160.0),
    default=None,
    help="Patch height, degrees (default: square).",
)
@click.option(
    "--pixel",
    type=FiniteFloat(min=0.0, min_open=True, max=600.0),
    default=0.25,
    show_default=True,
    help="Pixel side, arcmin.",
)
@click.option("--projection", type=click.Choice(["CAR", "TAN"]), default="CAR", show_default=True)
@click.option(
    "--ra", type=FiniteFloat(), default=60.0, show_default=True, help="Centre RA, degrees."
)
@click.option(
    "--dec",
    type=FiniteFloat(min=-80.0, max=80.0),
    default=-45.0,
    show_default=True,
    help="Centre Dec, degrees.",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed."
)
@click.option("--prefix", default="sim", show_default=True, help="Band-map file prefix.")
@click.option(
    "--mass-min", type=FiniteFloat(min=0.0, min_open=True), default=None, help="M500c floor, Msun."
)
@click.option("--enable", multiple=True, help="Components to switch on (comma-separated).")
@click.option("--disable", multiple=True, help="Components to switch off (comma-separated).")
@click.option("--ellipticity/--no-ellipticity", default=False, show_default=True)
@click.option(
    "--setting",
    type=click.Choice(SETTING_NAMES),
    default="default",
    show_default=True,
    help=_SETTING_HELP,
)
@click.option(
    "--healpix-nside",
    type=int,
    default=None,
    help="Simulate a full-sky HEALPix map at this Nside instead of a flat patch.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="JSON file of PatchConfig/HealpixConfig fields (command-line flags win).",
)
def mm(
    out: Path,
    size: float,
    height: float | None,
    pixel: float,
    projection: str,
    ra: float,
    dec: float,
    seed: int,
    prefix: str,
    mass_min: float | None,
    enable: tuple[str, ...],
    disable: tuple[str, ...],
    ellipticity: bool,
    setting: str,
    healpix_nside: int | None,
    config_path: Path | None,
) -> None:
    """Simulate a millimetre sky (CMB, SZ, sources, noise) and write FITS maps plus truth.

    Writes ``<prefix>_<band>.fits`` per band and ``truth_halos.parquet`` /
    ``truth_sources.parquet`` (simulation parameters in the Parquet metadata).
    """
    from pydantic import ValidationError

    from clusterfw.core.atomic import atomic_dir, check_replaceable, refuse_overwrite
    from clusterfw.core.errors import ClusterfwError
    from clusterfw.sim.config import HealpixConfig, PatchConfig

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix):
        raise click.BadParameter(
            f"must be a plain file-name prefix (letters, digits, _ . -), got {prefix!r}",
            param_hint="--prefix",
        )
    refuse_overwrite([config_path], [], folders=[out])
    keep = _sim_output(prefix)
    check_replaceable(out, keep)
    fields = _load_config(config_path)
    comps = fields.get("components", {})
    if not isinstance(comps, dict):
        raise ClusterfwError(f"{config_path}: 'components' must be a JSON object")
    comps = dict(comps)
    comps.update(_components(enable, disable))
    fields["components"] = comps
    fields["ellipticity"] = ellipticity
    if mass_min is not None:
        fields["m500c_min"] = mass_min
    if setting != "default" and healpix_nside is not None:
        raise ClusterfwError(f"--setting: {setting} is for flat patches (not --healpix-nside)")
    try:
        if healpix_nside is not None:
            _check_nside(healpix_nside)
            hcfg = HealpixConfig(**{**fields, "nside": healpix_nside})
            # streamed: each band is written to the output as soon as it is made
            result: Any = hcfg
            writer: Any = functools.partial(_write_streamed, seed=seed)
        else:
            from clusterfw.sim.patch import simulate_patch, write_patch

            cfg = PatchConfig(
                **{
                    **fields,
                    "size_deg": size,
                    "height_deg": height,
                    "pixel_arcmin": pixel,
                    "projection": projection,
                    "ra_deg": ra,
                    "dec_deg": dec,
                }
            )
            if setting != "default":
                from clusterfw.sim.settings import apply_setting

                cfg = apply_setting(cfg, setting, seed)
            _check_patch(cfg)
            result = simulate_patch(cfg, seed)
            writer = write_patch
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ClusterfwError(f"bad simulation parameter {loc}: {first['msg']}") from None
    except TypeError as exc:  # e.g. a config value of the wrong JSON type deep inside
        raise ClusterfwError(f"{config_path}: bad simulation parameters ({exc})") from None
    with atomic_dir(out, keep) as tmp:
        written = writer(result, tmp, prefix)
    for path in written["maps"]:
        click.echo(str(out / Path(path).name))
    click.echo(str(out / Path(written["halos"]).name))
    click.echo(str(out / Path(written["sources"]).name))


@simulate.command("cutouts")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-n",
    "--n",
    "n",
    type=click.IntRange(min=1, max=MAX_CUTOUTS),
    required=True,
    help="Number of cutouts.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Cutouts per shard.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["npz", "parquet"]), default="npz", show_default=True
)
@click.option(
    "--mode", type=click.Choice(["balanced", "grid"]), default="balanced", show_default=True
)
@click.option(
    "--positive-fraction", type=FiniteFloat(min=0.0, max=1.0), default=0.5, show_default=True
)
@click.option(
    "--labels",
    type=click.Choice(["deepsz", "sz"]),
    default="deepsz",
    show_default=True,
    help="Label definition: deepsz (Mvir >= 2e14 Msun, z > 0.25) or sz (M500c >= 1.5e14 Msun, "
    "any z); --mass-cut, --mass-definition and --z-min override its parts.",
)
@click.option(
    "--mass-cut",
    type=FiniteFloat(min=0.0, min_open=True),
    default=None,
    help="Mass cut, Msun (default: from --labels).",
)
@click.option(
    "--mass-definition",
    type=click.Choice(["mvir", "m200c", "m500c"]),
    default=None,
    help="Mass of the cut (default: from --labels).",
)
@click.option(
    "--z-min",
    type=FiniteFloat(min=0.0),
    default=None,
    help="Redshift cut (default: from --labels).",
)
@click.option(
    "--setting",
    type=click.Choice(SETTING_NAMES),
    default="default",
    show_default=True,
    help=_SETTING_HELP + " Drawn per simulated patch (group of cutouts).",
)
@click.option(
    "--size",
    type=click.IntRange(min=8, max=1024),
    default=32,
    show_default=True,
    help="Cutout side, pixels.",
)
@click.option(
    "--pixel",
    type=FiniteFloat(min=0.0, min_open=True, max=60.0),
    default=0.25,
    show_default=True,
    help="Pixel side, arcmin.",
)
def cutouts(
    out: Path,
    n: int,
    seed: int,
    chunk: int,
    fmt: Literal["npz", "parquet"],
    mode: str,
    positive_fraction: float,
    labels: str,
    mass_cut: float | None,
    mass_definition: str | None,
    z_min: float | None,
    setting: str,
    size: int,
    pixel: float,
) -> None:
    """Write labelled training cutouts (and Compton-y cutouts) in shards."""
    from clusterfw.core.atomic import check_writable
    from clusterfw.core.errors import ClusterfwError
    from clusterfw.sim.cutouts import label_options, write_cutout_shards

    cut = label_options(labels, mass_cut=mass_cut, mass_definition=mass_definition, z_min=z_min)

    if min(chunk, n) * size * size > MAX_SHARD_PIXELS:
        raise ClusterfwError(
            f"--chunk: shards of {min(chunk, n)} cutouts of {size}x{size} pixels hold "
            f"{min(chunk, n) * size * size} pixels per band (at most {MAX_SHARD_PIXELS}); "
            "use a smaller --chunk"
        )
    check_writable(out, folder=True)

    paths = write_cutout_shards(
        out,
        n,
        seed,
        chunk_size=chunk,
        fmt=fmt,
        mode=mode,
        positive_fraction=positive_fraction,
        size=size,
        pixel_arcmin=pixel,
        setting=setting,
        **cut,
    )
    for path in paths:
        click.echo(str(path))


from clusterfw.sim.cli_universe import COMMANDS as _UNIVERSE_COMMANDS  # noqa: E402

for _command in _UNIVERSE_COMMANDS:
    simulate.add_command(_command)

from clusterfw.sim.cli_shards import COMMANDS as _SHARD_COMMANDS  # noqa: E402

for _command in _SHARD_COMMANDS:
    simulate.add_command(_command)
