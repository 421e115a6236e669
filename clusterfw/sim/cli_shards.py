"""``clusterfw simulate optical-fields | mass-cutouts | xray-candidates``: training shards.

Plain click commands attached to the ``simulate`` group by :mod:`clusterfw.sim.cli`. Every
option is checked before any work (one line ``clusterfw: error: <option>: <problem>``, exit 2,
nothing written); the output folder must not exist or be empty and appears whole at the end,
with ``manifest.json`` (see :mod:`clusterfw.sim.shards.common`). Progress goes to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clusterfw.core.cli import FiniteFloat

MAX_SAMPLES = 10_000_000
#: Largest shard, in stored pixels (samples × channels × side²).
MAX_SHARD_PIXELS = 400_000_000


def _pair(option: str, value: str) -> tuple[float, float]:
    from clusterfw.core.errors import ClusterfwError

    parts = [p.strip() for p in value.split(",")]
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise ClusterfwError(f"{option}: expected two numbers LO,HI (got {value!r})") from None
    return lo, hi


def _bands(value: str) -> tuple[str, ...]:
    return tuple(b.strip() for b in value.split(",") if b.strip())


_COMMON = [
    click.option(
        "--out",
        "out",
        required=True,
        type=click.Path(file_okay=True, path_type=Path),
        help="Output folder (must not exist or be empty; written atomically).",
    ),
    click.option(
        "-n",
        "--n",
        "n",
        type=click.IntRange(min=1, max=MAX_SAMPLES),
        required=True,
        help="Number of samples.",
    ),  # fmt: skip
    click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def _common(shard_default: int) -> Any:
    def deco(f: Any) -> Any:
        f = click.option(
            "--shard-size",
            type=click.IntRange(min=1, max=MAX_SAMPLES),
            default=shard_default,
            show_default=True,
            help="Samples per shard.",
        )(f)
        for opt in reversed(_COMMON):
            f = opt(f)
        return f

    return deco


def _check_shard(shard_size: int, n: int, per_sample_pixels: int) -> None:
    from clusterfw.core.errors import ClusterfwError

    k = min(shard_size, n)
    if k * per_sample_pixels > MAX_SHARD_PIXELS:
        raise ClusterfwError(
            f"--shard-size: {k} samples of {per_sample_pixels} pixels each is "
            f"{k * per_sample_pixels} pixels per shard (at most {MAX_SHARD_PIXELS})"
        )


def _run(
    kind: str, out: Path, seed: int, n: int, shard: int, cfg: Any, samples: Any, q: bool
) -> None:
    from clusterfw.sim.shards.common import write_dataset

    res = write_dataset(
        out, kind, seed, cfg.model_dump(mode="json"), n, shard, samples, progress=not q
    )
    for s in res["shards"]:
        click.echo(str(out / s["file"]))
    click.echo(str(out / "manifest.json"))


@click.command("optical-fields")
@_common(8)
@click.option("--size", type=FiniteFloat(), default=0.2, show_default=True, help="Field, deg.")
@click.option("--preset", default="des", show_default=True, help="des or sdss.")
@click.option("--bands", default="g,r,i", show_default=True)
@click.option("--rebin", type=int, default=2, show_default=True, help="Sum rebin² pixels.")
@click.option("--max-clusters", type=int, default=3, show_default=True)
@click.option("--empty-fraction", type=FiniteFloat(), default=0.2, show_default=True)
@click.option("--mass-range", default="1e14,1e15", show_default=True, help="M500c, Msun.")
@click.option("--z-range", default="0.05,0.7", show_default=True)
@click.option(
    "--mass-distribution",
    type=click.Choice(["mass-function", "flat"]),
    default="mass-function",
    show_default=True,
)
@click.option("--seeing-range", default="0.85,1.25", show_default=True, help="PSF FWHM factor.")
@click.option("--depth-range", default="-0.5,0.3", show_default=True, help="Depth offset, mag.")
def optical_fields(
    out: Path,
    n: int,
    seed: int,
    quiet: bool,
    shard_size: int,
    size: float,
    preset: str,
    bands: str,
    rebin: int,
    max_clusters: int,
    empty_fraction: float,
    mass_range: str,
    z_range: str,
    mass_distribution: str,
    seeing_range: str,
    depth_range: str,
) -> None:
    """Optical g,r,i fields with cluster boxes (Deep-CEE-style detector training set)."""
    from clusterfw.sim.optical import get_preset
    from clusterfw.sim.shards.detection import KIND, OpticalFieldsConfig, field_samples
    from clusterfw.sim.universe import check_out_dir

    m = _pair("--mass-range", mass_range)
    z = _pair("--z-range", z_range)
    s = _pair("--seeing-range", seeing_range)
    d = _pair("--depth-range", depth_range)
    cfg = OpticalFieldsConfig(
        size_deg=size, preset=preset, bands=_bands(bands), rebin=rebin,
        max_clusters=max_clusters, empty_fraction=empty_fraction, m_min=m[0], m_max=m[1],
        z_min=z[0], z_max=z[1], mass_distribution=mass_distribution, seeing_min=s[0],
        seeing_max=s[1], depth_min=d[0], depth_max=d[1],
    )  # fmt: skip
    cfg.validate_options()
    side = round(size * 3600 / get_preset(preset).pixel_arcsec) // rebin
    _check_shard(shard_size, n, len(cfg.bands) * side * side)
    check_out_dir(out)
    _run(KIND, out, seed, n, shard_size, cfg, field_samples(cfg, seed, n), quiet)


@click.command("mass-cutouts")
@_common(256)
@click.option("--size-arcmin", type=FiniteFloat(), default=20.0, show_default=True)
@click.option("--npix", type=int, default=120, show_default=True, help="Pixels per side.")
@click.option("--mass-range", default="1e14,1e15", show_default=True, help="M500c, Msun.")
@click.option("--z-range", default="0.1,1.0", show_default=True)
@click.option(
    "--mass-distribution",
    type=click.Choice(["flat", "mass-function"]),
    default="flat",
    show_default=True,
)
@click.option("--neighbour-floor", type=FiniteFloat(), default=3e13, show_default=True)
@click.option("--offset-arcmin", type=FiniteFloat(), default=0.0, show_default=True)
@click.option("--xray-preset", default="erosita", show_default=True, help="erosita or xmm.")
@click.option("--ymap-preset", default="act", show_default=True, help="act, s4, deep or planck.")
@click.option(
    "--setting", default="default", show_default=True,
    help="Simulator setting drawn per cutout: default, randomised or battaglia_hiradio.",
)  # fmt: skip
def mass_cutouts(
    out: Path,
    n: int,
    seed: int,
    quiet: bool,
    shard_size: int,
    size_arcmin: float,
    npix: int,
    mass_range: str,
    z_range: str,
    mass_distribution: str,
    neighbour_floor: float,
    offset_arcmin: float,
    xray_preset: str,
    ymap_preset: str,
    setting: str,
) -> None:
    """Multi-channel cutouts (y, X-ray, stellar mass) centred on halos, with true M500c."""
    from clusterfw.sim.shards.mass import KIND, MassCutoutConfig, mass_samples
    from clusterfw.sim.universe import check_out_dir

    m = _pair("--mass-range", mass_range)
    z = _pair("--z-range", z_range)
    cfg = MassCutoutConfig(
        size_arcmin=size_arcmin, npix=npix, m_min=m[0], m_max=m[1], z_min=z[0], z_max=z[1],
        mass_distribution=mass_distribution, neighbour_floor=neighbour_floor,
        offset_arcmin=offset_arcmin, xray_preset=xray_preset, ymap_preset=ymap_preset,
        setting=setting,
    )  # fmt: skip
    cfg.validate_options()
    _check_shard(shard_size, n, 4 * npix * npix)
    check_out_dir(out)
    _run(KIND, out, seed, n, shard_size, cfg, mass_samples(cfg, seed, n), quiet)


@click.command("xray-candidates")
@_common(64)
@click.option("--field-size", type=FiniteFloat(), default=0.5, show_default=True, help="deg.")
@click.option("--size-arcmin", type=FiniteFloat(), default=4.0, show_default=True)
@click.option("--xray-preset", default="erosita", show_default=True, help="erosita or xmm.")
@click.option("--optical-preset", default="des", show_default=True, help="des or sdss.")
@click.option("--bands", default="g,r,i", show_default=True)
@click.option("--optical-rebin", type=int, default=4, show_default=True)
@click.option("--label-mass", type=FiniteFloat(), default=1e14, show_default=True)
@click.option("--positive-fraction", type=FiniteFloat(), default=0.5, show_default=True)
@click.option("--snr-min", type=FiniteFloat(), default=5.0, show_default=True)
@click.option("--abundance-boost", type=FiniteFloat(), default=10.0, show_default=True)
def xray_candidates(
    out: Path,
    n: int,
    seed: int,
    quiet: bool,
    shard_size: int,
    field_size: float,
    size_arcmin: float,
    xray_preset: str,
    optical_preset: str,
    bands: str,
    optical_rebin: int,
    label_mass: float,
    positive_fraction: float,
    snr_min: float,
    abundance_boost: float,
) -> None:
    """X-ray + optical cutouts of detected X-ray candidates, labelled cluster / not cluster."""
    from clusterfw.sim.optical import get_preset
    from clusterfw.sim.shards.classifier import KIND, XrayCandidatesConfig, candidate_samples
    from clusterfw.sim.universe import check_out_dir

    cfg = XrayCandidatesConfig(
        field_deg=field_size, size_arcmin=size_arcmin, xray_preset=xray_preset,
        optical_preset=optical_preset, bands=_bands(bands), optical_rebin=optical_rebin,
        label_mass=label_mass, positive_fraction=positive_fraction, snr_min=snr_min,
        abundance_boost=abundance_boost,
    )  # fmt: skip
    cfg.validate_options()
    nopt = round(size_arcmin * 60 / get_preset(optical_preset).pixel_arcsec) // optical_rebin
    _check_shard(shard_size, n, len(cfg.bands) * nopt * nopt)
    check_out_dir(out)
    _run(KIND, out, seed, n, shard_size, cfg, candidate_samples(cfg, seed, n), quiet)


COMMANDS = (optical_fields, mass_cutouts, xray_candidates)
