"""``clusterfw simulate``: the simulator's command-line interface (heavy imports stay lazy)."""

from __future__ import annotations

import json
from pathlib import Path

import click

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
@click.option("--size", type=float, default=2.0, show_default=True, help="Patch width, degrees.")
@click.option("--height", type=float, default=None, help="Patch height, degrees (default: square).")
@click.option("--pixel", type=float, default=0.25, show_default=True, help="Pixel side, arcmin.")
@click.option("--projection", type=click.Choice(["CAR", "TAN"]), default="CAR", show_default=True)
@click.option("--ra", type=float, default=60.0, show_default=True, help="Centre RA, degrees.")
@click.option("--dec", type=float, default=-45.0, show_default=True, help="Centre Dec, degrees.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--prefix", default="sim", show_default=True, help="Band-map file prefix.")
@click.option("--mass-min", type=float, default=None, help="M500c floor, Msun.")
@click.option("--enable", multiple=True, help="Components to switch on (comma-separated).")
@click.option("--disable", multiple=True, help="Components to switch off (comma-separated).")
@click.option("--ellipticity/--no-ellipticity", default=False, show_default=True)
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
    healpix_nside: int | None,
    config_path: Path | None,
) -> None:
    """Simulate a millimetre sky (CMB, SZ, sources, noise) and write FITS maps plus truth.

    Writes ``<prefix>_<band>.fits`` per band and ``truth_halos.parquet`` /
    ``truth_sources.parquet`` (simulation parameters in the Parquet metadata).
    """
    from pydantic import ValidationError

    from clusterfw.core.errors import ClusterfwError
    from clusterfw.sim.config import HealpixConfig, PatchConfig

    fields: dict = json.loads(config_path.read_text()) if config_path else {}
    comps = dict(fields.get("components", {}))
    comps.update(_components(enable, disable))
    fields["components"] = comps
    fields["ellipticity"] = ellipticity
    if mass_min is not None:
        fields["m500c_min"] = mass_min
    try:
        if healpix_nside is not None:
            from clusterfw.sim.healpix import simulate_healpix, write_healpix

            cfg = HealpixConfig(**{**fields, "nside": healpix_nside})
            written = write_healpix(simulate_healpix(cfg, seed), out, prefix)
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
            written = write_patch(simulate_patch(cfg, seed), out, prefix)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ClusterfwError(f"bad simulation parameter {loc}: {first['msg']}") from None
    for path in written["maps"]:
        click.echo(str(path))
    click.echo(str(written["halos"]))
    click.echo(str(written["sources"]))


@simulate.command("cutouts")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "--n", "n", type=int, required=True, help="Number of cutouts.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--chunk", type=int, default=4096, show_default=True, help="Cutouts per shard.")
@click.option(
    "--format", "fmt", type=click.Choice(["npz", "parquet"]), default="npz", show_default=True
)
@click.option(
    "--mode", type=click.Choice(["balanced", "grid"]), default="balanced", show_default=True
)
@click.option("--positive-fraction", type=float, default=0.5, show_default=True)
@click.option("--mass-cut", type=float, default=2e14, show_default=True)
@click.option(
    "--mass-definition",
    type=click.Choice(["mvir", "m200c", "m500c"]),
    default="mvir",
    show_default=True,
)
@click.option("--z-min", type=float, default=0.25, show_default=True)
@click.option("--size", type=int, default=32, show_default=True, help="Cutout side, pixels.")
@click.option("--pixel", type=float, default=0.25, show_default=True, help="Pixel side, arcmin.")
def cutouts(
    out: Path,
    n: int,
    seed: int,
    chunk: int,
    fmt: str,
    mode: str,
    positive_fraction: float,
    mass_cut: float,
    mass_definition: str,
    z_min: float,
    size: int,
    pixel: float,
) -> None:
    """Write labelled training cutouts (and Compton-y cutouts) in shards."""
    from clusterfw.sim.cutouts import write_cutout_shards

    paths = write_cutout_shards(
        out,
        n,
        seed,
        chunk_size=chunk,
        fmt=fmt,
        mode=mode,
        positive_fraction=positive_fraction,
        mass_cut=mass_cut,
        mass_definition=mass_definition,
        z_min=z_min,
        size=size,
        pixel_arcmin=pixel,
    )
    for path in paths:
        click.echo(str(path))
