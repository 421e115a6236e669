"""Channel stacks for ``vgg_mass`` from mass-cutout shards, their normalisation and the split.

Input: a folder written by ``clusterfw simulate mass-cutouts`` (:mod:`clusterfw.sim.shards.mass`;
manifest-checked ``.npz`` shards, read with :func:`clusterfw.sim.shards.common.iter_shards`).

Channels and normalisation (the same functions serve training and the estimator, so a cutout
of a real layer is scaled exactly as the training cutouts were):

``y``
    Compton-y divided by :data:`Y_SCALE` (1e-4), linear — the noise stays Gaussian and
    symmetric, and a 1e15 Msun cluster's beamed centre is of order 1.
``xray``
    Counts over exposure, ``asinh(counts × T_REF / exposure)`` with :data:`T_REF` = 2 ks (the
    ``erosita`` preset's exposure): counts per 2 ks per pixel, compressed by ``asinh`` (linear
    below one count, logarithmic in bright cores); 0 where the exposure is 0.
``optical``
    The stellar-mass map, ``asinh(M* / MSTAR_SCALE)`` with :data:`MSTAR_SCALE` = 1e10 Msun per
    pixel (toy stellar-mass maps of :mod:`clusterfw.sim.ymap`; a real optical layer would need a
    stellar-light to stellar-mass step first — not done here).

``rebin`` (default 1: the shards' 10" pixels, Yan et al.'s 120² cutouts) averages
``rebin × rebin`` blocks (sums for counts and exposure, then the same ratio), for quicker CPU
runs; the factor is part of the model's configuration and of its card.

Targets: ``ln(M500c / M_PIVOT)`` with :data:`M_PIVOT` = 3e14 Msun; redshift enters the network
unscaled (0.1–1 in the training set).

Split: the mass-cutout shards carry no sky position per sample — every cutout is an independent
line of sight rendered around the same nominal centre, with its own halos, so no halo is seen by
two samples and a random split by sample is already disjoint on the sky that matters. When the
data do carry positions (``ra``, ``dec`` arrays, e.g. cutouts cut from one simulated universe,
where neighbouring cutouts share halos), :func:`split_indices` assigns whole nested HEALPix
pixels of order :data:`SPLIT_ORDER` (3: 7.3°) to train, validation and test, so no halo lies in
two splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clusterfw.core.errors import ClusterfwError, InputError

Y_SCALE = 1e-4
T_REF = 2000.0
MSTAR_SCALE = 1e10
M_PIVOT = 3e14
SPLIT_ORDER = 3
CHANNELS = ("y", "xray", "optical")
CHANNEL_SETS = {"y": ("y",), "y,xray": ("y", "xray"), "y,xray,optical": ("y", "xray", "optical")}


def parse_channels(text: str) -> tuple[str, ...]:
    """``"y"``, ``"y,xray"`` or ``"y,xray,optical"`` → a tuple (one-line error otherwise)."""
    key = ",".join(p.strip() for p in str(text).split(",") if p.strip())
    if key not in CHANNEL_SETS:
        raise ClusterfwError(
            f"--channels: expected one of {', '.join(CHANNEL_SETS)} (got {text!r})"
        )
    return CHANNEL_SETS[key]


def _rebin_sum(a: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return a
    ny, nx = a.shape[-2:]
    my, mx = ny // factor, nx // factor
    cut = a[..., : my * factor, : mx * factor]
    return cut.reshape(*a.shape[:-2], my, factor, mx, factor).sum(axis=(-3, -1))


def normalise_y(y: np.ndarray, rebin: int = 1) -> np.ndarray:
    """Compton-y → network input: block mean over ``rebin``, divided by :data:`Y_SCALE`."""
    y = np.asarray(y, dtype=np.float64)
    return (_rebin_sum(y, rebin) / (rebin * rebin) / Y_SCALE).astype(np.float32)


def normalise_xray(counts: np.ndarray, exposure: np.ndarray, rebin: int = 1) -> np.ndarray:
    """Counts and exposure (s) → ``asinh(counts × T_REF / exposure)`` per (rebinned) pixel."""
    c = _rebin_sum(np.asarray(counts, dtype=np.float64), rebin)
    t = _rebin_sum(np.asarray(exposure, dtype=np.float64), rebin) / (rebin * rebin)
    rate = np.divide(c * T_REF, t, out=np.zeros_like(c), where=t > 0)
    return np.arcsinh(rate).astype(np.float32)


def normalise_optical(mstar: np.ndarray, rebin: int = 1) -> np.ndarray:
    """Stellar mass (Msun per pixel) → ``asinh(M* / MSTAR_SCALE)`` per (rebinned) pixel."""
    m = _rebin_sum(np.asarray(mstar, dtype=np.float64), rebin)
    return np.arcsinh(m / MSTAR_SCALE).astype(np.float32)


def stack_channels(
    arrays: dict[str, np.ndarray], channels: Sequence[str], rebin: int = 1
) -> np.ndarray:
    """``(n, ny, nx, n_channel)`` float32 inputs from raw shard arrays (sample axis first)."""
    planes = []
    for ch in channels:
        if ch == "y":
            planes.append(normalise_y(arrays["y"], rebin))
        elif ch == "xray":
            planes.append(normalise_xray(arrays["xray_counts"], arrays["xray_exposure"], rebin))
        elif ch == "optical":
            planes.append(normalise_optical(arrays["stellar_mass"], rebin))
        else:
            raise ClusterfwError(f"--channels: unknown channel {ch!r}")
    return np.stack(planes, axis=-1)


def target(m500c: np.ndarray) -> np.ndarray:
    """Regression target ``ln(M500c / M_PIVOT)``."""
    return np.log(np.asarray(m500c, dtype=np.float64) / M_PIVOT)


def mass_from_target(t: np.ndarray) -> np.ndarray:
    """Inverse of :func:`target` (Msun)."""
    return M_PIVOT * np.exp(np.asarray(t, dtype=np.float64))


@dataclass
class MassData:
    """Inputs and labels of a shard folder.

    Attributes
    ----------
    x : numpy.ndarray
        ``(n, ny, nx, n_channel)`` float32 normalised channels.
    z, m500c : numpy.ndarray
        Redshift and true M500c (Msun).
    y_raw : numpy.ndarray or None
        The un-normalised y cutouts (for the Y–M baseline), when asked for.
    labels : dict
        Every other scalar label of the shards (``dln_y``, ``y500``, ...).
    pixel_arcmin : float
        Pixel side of ``x`` (after rebinning).
    raw_pixel_arcmin : float
        Pixel side of ``y_raw``.
    ymap_preset : str
        The y survey preset of the shards (beam and depth of the baseline).
    """

    x: np.ndarray
    z: np.ndarray
    m500c: np.ndarray
    y_raw: np.ndarray | None
    labels: dict[str, np.ndarray]
    pixel_arcmin: float
    raw_pixel_arcmin: float
    ymap_preset: str
    manifest: dict


def load_mass_data(
    directory: str | Path,
    channels: Sequence[str],
    rebin: int = 1,
    limit: int | None = None,
    keep_y: bool = False,
) -> MassData:
    """Read and normalise a ``mass-cutouts`` shard folder (every shard verified).

    Parameters
    ----------
    directory : str or Path
    channels : sequence of str
        Subset of :data:`CHANNELS`, in network order.
    rebin : int
        Block size (must divide the cutout side).
    limit : int, optional
        Read only the first ``limit`` samples.
    keep_y : bool
        Also keep the raw y cutouts (float32) for the Y–M baseline.

    Raises
    ------
    clusterfw.core.errors.InputError
        Not a mass-cutout folder, a corrupt shard, or a cutout side ``rebin`` does not divide.
    """
    from clusterfw.sim.shards.common import load_shard, read_manifest

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.get("kind") != "mass-cutouts":
        raise InputError(
            str(directory / "manifest.json"),
            f"shards of kind {manifest.get('kind')!r}, not mass-cutouts",
        )
    cfg = manifest.get("config", {})
    npix = int(cfg.get("npix", manifest["arrays"]["y"]["shape"][0]))
    if rebin < 1 or npix % rebin:
        raise InputError(str(directory), f"--rebin {rebin} does not divide the {npix}-pixel side")
    raw_pix = float(cfg.get("size_arcmin", 20.0)) / npix
    xs, ys, labels = [], [], {}
    total = 0
    for i in range(len(manifest["shards"])):
        if limit is not None and total >= limit:
            break
        arrays = load_shard(directory, i, manifest)
        n = arrays["m500c"].shape[0]
        take = n if limit is None else min(n, limit - total)
        arrays = {k: v[:take] for k, v in arrays.items()}
        xs.append(stack_channels(arrays, channels, rebin))
        if keep_y:
            ys.append(arrays["y"].astype(np.float32))
        for k, v in arrays.items():
            if v.ndim == 1:
                labels.setdefault(k, []).append(v)
        total += take
    if not xs:
        raise InputError(str(directory), "holds no samples")
    lab = {k: np.concatenate(v) for k, v in labels.items()}
    return MassData(
        x=np.concatenate(xs),
        z=lab.pop("z").astype(np.float64),
        m500c=lab.pop("m500c").astype(np.float64),
        y_raw=np.concatenate(ys) if keep_y else None,
        labels=lab,
        pixel_arcmin=raw_pix * rebin,
        raw_pixel_arcmin=raw_pix,
        ymap_preset=str(cfg.get("ymap_preset", "act")),
        manifest=manifest,
    )


def load_many(
    directories: Sequence[str | Path],
    channels: Sequence[str],
    rebin: int = 1,
    limit: int | None = None,
    keep_y: bool = False,
) -> MassData:
    """:func:`load_mass_data` of several shard folders (e.g. made in parallel), concatenated.

    The folders must share the cutout grid and the survey presets; labels present in only some
    folders are dropped. ``limit`` applies to the total.

    Raises
    ------
    clusterfw.core.errors.InputError
        A folder whose grid or presets differ from the first's.
    """
    parts: list[MassData] = []
    left = limit
    for directory in directories:
        if left is not None and left <= 0:
            break
        d = load_mass_data(directory, channels, rebin=rebin, limit=left, keep_y=keep_y)
        if parts and (
            d.x.shape[1:] != parts[0].x.shape[1:]
            or not math.isclose(d.raw_pixel_arcmin, parts[0].raw_pixel_arcmin)
            or d.ymap_preset != parts[0].ymap_preset
        ):
            raise InputError(
                str(directory), "cutout grid or y preset differs from the first --data folder"
            )
        parts.append(d)
        if left is not None:
            left -= d.x.shape[0]
    if len(parts) == 1:
        return parts[0]
    keys = set.intersection(*(set(p.labels) for p in parts))
    first = parts[0]
    return MassData(
        x=np.concatenate([p.x for p in parts]),
        z=np.concatenate([p.z for p in parts]),
        m500c=np.concatenate([p.m500c for p in parts]),
        y_raw=np.concatenate([p.y_raw for p in parts]) if keep_y else None,  # type: ignore[misc]
        labels={k: np.concatenate([p.labels[k] for p in parts]) for k in sorted(keys)},
        pixel_arcmin=first.pixel_arcmin,
        raw_pixel_arcmin=first.raw_pixel_arcmin,
        ymap_preset=first.ymap_preset,
        manifest={**first.manifest, "folders": [p.manifest for p in parts]},
    )


def select(d: MassData, keep: np.ndarray) -> MassData:
    """The samples of ``d`` where ``keep`` is true (e.g. one redshift bin)."""
    return MassData(
        x=d.x[keep],
        z=d.z[keep],
        m500c=d.m500c[keep],
        y_raw=None if d.y_raw is None else d.y_raw[keep],
        labels={k: v[keep] for k, v in d.labels.items()},
        pixel_arcmin=d.pixel_arcmin,
        raw_pixel_arcmin=d.raw_pixel_arcmin,
        ymap_preset=d.ymap_preset,
        manifest=d.manifest,
    )


def ym_floor_residuals(m500c: np.ndarray, z: np.ndarray, y500_arcmin2: np.ndarray) -> np.ndarray:
    """The ln-mass error of a perfect Y500 measurement inverted through the default relation.

    ``(ln Y500 − ln Y(M, z)) / B`` with the simulator's default A10 relation
    (:class:`clusterfw.sim.config.SimConfig`: normalisation, slope B = 1.78): the part of a
    y-only mass error that no y map can remove — the intrinsic Y–M scatter, plus, for
    ``randomised`` cutouts, the drawn normalisation factor (×0.8–1.2) and σ_lnY (0.1–0.3).
    Its standard deviation is the *floor* the acceptance compares the y-only scatter with.
    """
    from clusterfw.sim import sz
    from clusterfw.sim.config import SimConfig

    sim = SimConfig()
    med = sz.arcmin2(
        sz.y500_scaling(np.asarray(m500c), np.asarray(z), sim.y500_log10_norm, sim.y500_slope)
    )
    return (np.log(np.asarray(y500_arcmin2, dtype=np.float64)) - np.log(med)) / sim.y500_slope


def split_indices(
    n: int,
    seed: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    ra: np.ndarray | None = None,
    dec: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Train / validation / test indices.

    Without positions: a seeded permutation of the samples cut at ``fractions`` (independent
    lines of sight). With ``ra``/``dec`` (degrees): whole nested HEALPix pixels of order
    :data:`SPLIT_ORDER`, shuffled with ``seed`` and given to the splits until each holds its
    fraction of the samples, so samples of one sky region never straddle two splits.
    """
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-9) or min(fractions) < 0:
        raise ClusterfwError(f"split fractions must be >= 0 and sum to 1 (got {fractions})")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(15, 1)))
    names = ("train", "val", "test")
    if ra is None or dec is None:
        perm = rng.permutation(n)
        cuts = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
        parts = np.split(perm, cuts)
        return {k: np.sort(p) for k, p in zip(names, parts, strict=True)}
    import healpy as hp

    pix = hp.ang2pix(2**SPLIT_ORDER, np.asarray(ra), np.asarray(dec), nest=True, lonlat=True)
    cells = rng.permutation(np.unique(pix))
    counts = np.array([np.count_nonzero(pix == c) for c in cells])
    edges = np.cumsum(fractions) * n
    which = np.searchsorted(edges, np.cumsum(counts) - counts / 2.0, side="right")
    which = np.minimum(which, 2)
    out = {}
    for j, k in enumerate(names):
        out[k] = np.sort(np.flatnonzero(np.isin(pix, cells[which == j])))
    return out
