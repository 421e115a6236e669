"""``clusterfw simulate universe | xray | ymap | optical``: a multi-instrument simulated universe.

The commands are plain click commands; :mod:`clusterfw.sim.cli` attaches them to the
``simulate`` group. Every option is checked before any work: a bad one gives one line
``clusterfw: error: <option>: <problem>`` and exit status 2, and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

_OUT = click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=True, path_type=Path),
    help="Output folder (must not exist or be empty; written atomically).",
)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _pydantic_error(exc: Any, option_for: dict[str, str]) -> Exception:
    from clusterfw.core.errors import ClusterfwError

    first = exc.errors()[0]
    loc = [str(x) for x in first["loc"]]
    name = option_for.get(loc[-1] if loc else "", ".".join(loc))
    msg = first["msg"].removeprefix("Value error, ")
    return ClusterfwError(f"{name}: {msg}")


@click.command("universe")
@_OUT
@click.option("--size", type=float, default=1.0, show_default=True, help="Patch side, degrees.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--layers",
    default="mm,xray,ymap",
    show_default=True,
    help="Comma-separated subset of mm, optical, xray, ymap.",
)
@click.option("--pixel", type=float, default=0.25, show_default=True, help="mm pixel, arcmin.")
@click.option("--projection", type=click.Choice(["CAR", "TAN"]), default="CAR", show_default=True)
@click.option("--ra", type=float, default=60.0, show_default=True, help="Centre RA, degrees.")
@click.option("--dec", type=float, default=-45.0, show_default=True, help="Centre Dec, degrees.")
@click.option("--mass-min", type=float, default=None, help="M500c floor, Msun.")
@click.option("--xray-preset", default="erosita", show_default=True, help="erosita or xmm.")
@click.option("--ymap-preset", default="act", show_default=True, help="act, s4, deep or planck.")
@click.option("--optical-preset", default="des", show_default=True, help="des or sdss.")
@click.option("--bands", default="g,r,i", show_default=True, help="Optical bands.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="JSON file of UniverseConfig fields (command-line flags win).",
)
def universe(
    out: Path,
    size: float,
    seed: int,
    layers: str,
    pixel: float,
    projection: str,
    ra: float,
    dec: float,
    mass_min: float | None,
    xray_preset: str,
    ymap_preset: str,
    optical_preset: str,
    bands: str,
    config_path: Path | None,
) -> None:
    """Simulate one halo catalogue and render it in mm, optical, X-ray and Compton-y.

    Writes DIR/mm/, DIR/optical/, DIR/xray/, DIR/ymap/ (+ DIR/stellar_mass/) for the requested
    layers, DIR/truth_halos.parquet (every observable) and DIR/universe.json.
    """
    from pydantic import ValidationError

    from clusterfw.core.errors import ClusterfwError
    from clusterfw.sim.config import PatchConfig
    from clusterfw.sim.universe import (
        UniverseConfig,
        _validate_presets,
        check_out_dir,
        simulate_universe,
        write_universe,
    )

    check_out_dir(out)
    fields: dict[str, Any] = {}
    if config_path is not None:
        try:
            fields = json.loads(config_path.read_text())
        except ValueError as exc:
            raise ClusterfwError(f"{config_path}: not JSON ({exc})") from None
        if not isinstance(fields, dict):
            raise ClusterfwError(f"{config_path}: not a JSON object")
    patch = dict(fields.get("patch", {}))
    patch.update(size_deg=size, pixel_arcmin=pixel, projection=projection, ra_deg=ra, dec_deg=dec)
    if mass_min is not None:
        patch["m500c_min"] = mass_min
    option_for = {
        "size_deg": "--size",
        "pixel_arcmin": "--pixel",
        "dec_deg": "--dec",
        "m500c_min": "--mass-min",
        "layers": "--layers",
    }
    try:
        cfg = UniverseConfig(
            **{
                **fields,
                "patch": PatchConfig(**patch),
                "layers": _csv(layers),
                "xray_preset": xray_preset,
                "ymap_preset": ymap_preset,
                "optical_preset": optical_preset,
                "optical_bands": _csv(bands),
            }
        )
    except ValidationError as exc:
        raise _pydantic_error(exc, option_for) from None
    _validate_presets(cfg)
    written = write_universe(simulate_universe(cfg, seed), out)
    for layer, paths in written["layers"].items():
        for p in paths:
            click.echo(f"{layer}\t{p}")
    click.echo(f"halos\t{written['halos']}")


def _layer_command(layer: str, presets_help: str) -> click.Command:
    @click.command(layer)
    @click.option(
        "--halos",
        "halos",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="truth_halos.parquet of `simulate universe` or `simulate mm`.",
    )
    @_OUT
    @click.option(
        "--seed",
        type=int,
        default=None,
        help="Random seed (default: the catalogue's, which reproduces its universe's layer).",
    )
    @click.option("--preset", default=None, help=presets_help)
    def command(
        halos: Path, out: Path, seed: int | None, preset: str | None, bands: str | None = None
    ) -> None:
        from clusterfw.sim.universe import render_layer

        written = render_layer(
            layer,
            halos,
            out,
            seed=seed,
            preset=preset,
            bands=_csv(bands) if bands is not None else None,
        )
        for p in written["files"]:
            click.echo(str(p))

    if layer == "optical":
        command = click.option("--bands", default=None, help="Bands (comma-separated).")(command)
    command.help = (
        f"Render the {layer} layer of an existing halo catalogue (same halos, same observables)."
    )
    return command


xray = _layer_command("xray", "X-ray survey preset: erosita or xmm (default: the universe's).")
ymap = _layer_command("ymap", "y-map preset: act or planck (default: the universe's).")
optical = _layer_command("optical", "Optical preset: des or sdss (default: the universe's).")

COMMANDS = (universe, xray, ymap, optical)
