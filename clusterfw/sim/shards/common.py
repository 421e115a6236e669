"""Shard writer and reader shared by the training-set fast paths, and their halo helpers.

A dataset is a folder of ``<kind>_<NNNNN>.npz`` shards plus ``manifest.json``::

    {"format": "clusterfw-shards", "version": 1, "kind": "...", "seed": N,
     "sim_version": "1", "config": {...every option...}, "count": total samples,
     "shard_size": K, "arrays": {name: {"dtype": "...", "shape": [per-sample shape]}},
     "shards": [{"file": "...", "count": k, "sha256": "...", "bytes": b}, ...]}

The whole folder is built in a temporary sibling and renamed into place at the end
(:func:`clusterfw.core.atomic.atomic_dir`), so a reader sees all of it or nothing, and the
manifest is written last. Shards are plain ``.npz`` archives (``np.load(...,
allow_pickle=False)`` opens them); the archive members carry a fixed timestamp, so a rerun with
the same seed and options writes byte-identical files (same sha256). Every array has the sample
axis first; variable-length items (boxes of a field) are padded, with a count array.

:func:`read_manifest` / :func:`load_shard` / :func:`iter_shards` verify each shard's sha256,
sample count, array names, dtypes and shapes against the manifest and refuse a mismatch with a
one-line :class:`clusterfw.core.errors.InputError`.

Randomness: sample ``i`` of a dataset of kind ``k`` draws from
``SeedSequence(seed, spawn_key=(KIND_CODES[k], i))`` only, so a sample does not depend on the
shard size or on the other samples.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import zipfile
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import ClusterfwError, InputError

FORMAT = "clusterfw-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KIND_CODES = {"optical-fields": 1, "mass-cutouts": 2, "xray-candidates": 3}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
FLOAT16_MAX = 65504.0


# --- seeds and validation -------------------------------------------------------------------


def sample_rng(seed: int, kind: str, index: int, sub: int = 0) -> np.random.Generator:
    """The generator of sample ``index`` (stream ``sub``) of a dataset of ``kind``."""
    return np.random.default_rng(
        np.random.SeedSequence(int(seed), spawn_key=(KIND_CODES[kind], int(index), int(sub)))
    )


def sample_seed(seed: int, kind: str, index: int, sub: int = 0) -> np.random.SeedSequence:
    """The :class:`numpy.random.SeedSequence` of sample ``index`` (stream ``sub``)."""
    return np.random.SeedSequence(int(seed), spawn_key=(KIND_CODES[kind], int(index), int(sub)))


def require(condition: bool, option: str, problem: str) -> None:
    """Raise ``ClusterfwError('<option>: <problem>')`` unless ``condition``."""
    if not condition:
        raise ClusterfwError(f"{option}: {problem}")


def check_range(option: str, lo: float, hi: float, *, positive: bool = True) -> None:
    """A finite ``lo <= hi`` range (strictly positive when ``positive``)."""
    require(math.isfinite(lo) and math.isfinite(hi), option, "must be finite")
    require(lo <= hi, option, f"lower end {lo:g} exceeds upper end {hi:g}")
    if positive:
        require(lo > 0, option, f"must be positive (got {lo:g})")


def to_float16(image: np.ndarray) -> np.ndarray:
    """``image`` as float16, clipped to the float16 range (no ``inf``)."""
    return np.clip(image, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


def rebin(image: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor × factor`` blocks of the last two axes (flux-conserving; edges cropped)."""
    if factor == 1:
        return image
    ny, nx = image.shape[-2:]
    my, mx = ny // factor, nx // factor
    cut = image[..., : my * factor, : mx * factor]
    shape = (*image.shape[:-2], my, factor, mx, factor)
    return cut.reshape(shape).sum(axis=(-3, -1))


# --- halos ----------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _abundance_grid(
    lo: float, hi: float, z_lo: float, z_hi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges in log10 M and z and the cumulative Tinker08 counts over the flattened cells."""
    from clusterfw.sim.halos import abundance

    dlm, dz = 0.01, 0.01
    lm_edges = np.arange(lo, hi + dlm / 2, dlm) if hi - lo > dlm else np.array([lo, hi + 1e-9])
    nz = max(1, int(math.ceil((z_hi - z_lo) / dz)))
    z_edges = np.linspace(z_lo, z_hi, nz + 1)
    lm_c = 0.5 * (lm_edges[1:] + lm_edges[:-1])
    z_c = np.maximum(0.5 * (z_edges[1:] + z_edges[:-1]), 1e-4)
    w = abundance(10 ** lm_c[:, None], z_c[None, :]) * np.diff(lm_edges)[:, None]
    w = w * np.diff(z_edges)[None, :]
    return lm_edges, z_edges, np.cumsum(w.ravel())


def draw_mass_redshift(
    rng: np.random.Generator,
    n: int,
    m_range: tuple[float, float],
    z_range: tuple[float, float],
    distribution: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (M500c, z) pairs: ``flat`` (uniform in log10 M and in z) or ``mass-function``.

    ``mass-function`` draws from the Tinker et al. (2008) abundance
    ``d²N/(dlog10 M dz)`` per steradian (:func:`clusterfw.sim.halos.abundance`, comoving volume
    included) restricted to the ranges, on a 0.01 dex × 0.01 grid with uniform jitter in a cell.
    """
    lo, hi = math.log10(m_range[0]), math.log10(m_range[1])
    if distribution == "flat":
        return 10 ** rng.uniform(lo, hi, n), rng.uniform(z_range[0], z_range[1], n)
    if distribution != "mass-function":
        raise ClusterfwError(f"--mass-distribution: unknown {distribution!r}")
    lm_edges, z_edges, cum = _abundance_grid(lo, hi, float(z_range[0]), float(z_range[1]))
    idx = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), cum.size - 1)
    i_m, i_z = np.divmod(idx, z_edges.size - 1)
    jit = rng.random((2, n))
    lm = lm_edges[i_m] + jit[0] * np.diff(lm_edges)[i_m]
    z = z_edges[i_z] + jit[1] * np.diff(z_edges)[i_z]
    return 10**lm, z


def sample_field_halos(
    rng: np.random.Generator,
    area_deg2: float,
    m_min: float,
    m_max: float,
    z_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson-sample the halos of ``area_deg2`` with ``m_min <= M500c < m_max`` (Tinker08)."""
    from clusterfw.sim.halos import expected_halo_count

    area_sr = area_deg2 * (math.pi / 180.0) ** 2
    if m_max <= m_min:
        return np.zeros(0), np.zeros(0)
    mean = expected_halo_count(area_sr, m_min, *z_range) - expected_halo_count(
        area_sr, m_max, *z_range
    )
    n = int(rng.poisson(max(mean, 0.0)))
    return draw_mass_redshift(rng, n, (m_min, m_max), z_range, "mass-function")


def halo_table(
    m500c: np.ndarray,
    z: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    rng: np.random.Generator,
    sim: Any = None,
    observables: Any = None,
) -> pa.Table:
    """A halo table with every column the X-ray, y, stellar-mass and optical renderers read.

    Derived exactly as :func:`clusterfw.sim.patch.sample_halo_catalogue` and
    :func:`clusterfw.sim.observables.draw_observables` do for a universe: M200c, c200c (NFW,
    Duffy08), θ500, the A10 ``Y500`` with log-normal scatter ``σ_lnY`` (``sim``: a
    :class:`clusterfw.sim.config.SimConfig`, defaults), T (Arnaud+05), round halos, then the
    correlated richness, L_X, flux and stellar mass (``observables``: an
    :class:`~clusterfw.sim.observables.ObservablesConfig`). ``halo_id`` is the row number.
    """
    from clusterfw.sim import halos as halo_mod
    from clusterfw.sim import sz
    from clusterfw.sim.config import SimConfig
    from clusterfw.sim.instrument import ARCMIN
    from clusterfw.sim.observables import ObservablesConfig, draw_observables

    sim = sim or SimConfig()
    observables = observables or ObservablesConfig()
    m500c = np.asarray(m500c, float)
    z = np.asarray(z, float)
    n = m500c.size
    conv = halo_mod.convert_m500c(m500c, z)
    th500 = sz.theta500_rad(m500c, z) if n else np.zeros(0)
    y_med = sz.y500_scaling(m500c, z, sim.y500_log10_norm, sim.y500_slope) if n else np.zeros(0)
    y500 = y_med * np.exp(sim.y500_scatter_ln * rng.standard_normal(n))
    cols: dict[str, np.ndarray] = {
        "halo_id": np.arange(n, dtype=np.int64),
        "ra": np.asarray(ra, float) % 360.0,
        "dec": np.asarray(dec, float),
        "z": z,
        "m500c": m500c,
        "m200c": conv["m200c"],
        "mvir": conv["mvir"],
        "c200c": conv["c200c"],
        "r500_mpc": halo_mod.r500_mpc(m500c, z),
        "theta500_arcmin": th500 / ARCMIN,
        "y500": sz.arcmin2(y500) if n else np.zeros(0),
        "y500_median": sz.arcmin2(y_med) if n else np.zeros(0),
        "t_kev": sz.temperature_kev(m500c, z) if n else np.zeros(0),
        "axis_ratio": np.ones(n),
        "position_angle": np.zeros(n),
    }
    obs = draw_observables(cols, sim.y500_scatter_ln, observables, rng)
    cols.update(obs)
    return pa.table({k: pa.array(np.asarray(v)) for k, v in cols.items()})


def offsets_to_radec(
    ra0: float, dec0: float, dx_deg: np.ndarray, dy_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions of small tangent-plane offsets (east = +dx) around ``(ra0, dec0)``."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0 % 360.0, dec0]
    w.wcs.crpix = [1.0, 1.0]  # 0-based pixel (0, 0) is the reference point
    w.wcs.cdelt = [-1.0, 1.0]
    w.wcs.set()
    if np.size(dx_deg) == 0:
        return np.zeros(0), np.zeros(0)
    ra, dec = w.wcs_pix2world(-np.asarray(dx_deg, float), np.asarray(dy_deg, float), 0)
    return np.asarray(ra) % 360.0, np.asarray(dec)


# --- writing --------------------------------------------------------------------------------


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive (uncompressed) with fixed member timestamps: reproducible bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                arr = np.ascontiguousarray(arrays[name])
                np.lib.format.write_array(fh, arr, allow_pickle=False)
    return buf.getvalue()


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", file=sys.stderr, disable=not enabled)


def write_dataset(
    out: str | Path,
    kind: str,
    seed: int,
    config: dict[str, Any],
    n: int,
    shard_size: int,
    samples: Iterable[dict[str, np.ndarray]],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Make ``n`` samples with ``make_sample(i)`` and write them in shards of ``shard_size``.

    Parameters
    ----------
    out : str or Path
        Output folder: must not exist or be empty; built in a temporary sibling and renamed.
    kind : str
        One of :data:`KIND_CODES`.
    seed : int
    config : dict
        Every option (JSON-able), stored in the manifest.
    n, shard_size : int
    samples : iterable of dict
        Yields (at least) ``n`` samples, each a dict of arrays with the same names, dtypes and
        shapes (e.g. ``(make_sample(i) for i in range(n))``).
    progress : bool
        A tqdm bar on stderr.

    Returns
    -------
    dict
        The manifest, plus ``directory``.
    """
    from clusterfw.core.atomic import atomic_dir
    from clusterfw.sim.truth import SIM_VERSION
    from clusterfw.sim.universe import check_out_dir

    out = Path(out)
    check_out_dir(out)
    shards: list[dict[str, Any]] = []
    spec: dict[str, dict[str, Any]] = {}
    source = iter(samples)
    with atomic_dir(out, lambda _entry: False) as tmp, _progress(n, kind, progress) as bar:
        for k, start in enumerate(range(0, n, shard_size)):
            stop = min(n, start + shard_size)
            batch = []
            for _ in range(start, stop):
                batch.append(next(source))
                bar.update(1)
            arrays = {name: np.stack([s[name] for s in batch]) for name in batch[0]}
            here = {
                name: {"dtype": str(a.dtype), "shape": list(a.shape[1:])}
                for name, a in arrays.items()
            }
            if not spec:
                spec = here
            elif here != spec:
                raise RuntimeError(f"shard {k} arrays differ from shard 0: {here} vs {spec}")
            data = _npz_bytes(arrays)
            name = f"{kind.replace('-', '_')}_{k:05d}.npz"
            (tmp / name).write_bytes(data)
            shards.append(
                {
                    "file": name,
                    "count": stop - start,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data),
                }
            )
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": kind,
            "seed": int(seed),
            "sim_version": SIM_VERSION,
            "config": config,
            "count": int(n),
            "shard_size": int(shard_size),
            "arrays": spec,
            "shards": shards,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return {**manifest, "directory": out}


# --- reading --------------------------------------------------------------------------------


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder (one-line :class:`InputError` when missing or malformed)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(str(path), "no such file (not a clusterfw shard folder)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(str(path), f"unreadable manifest ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(str(path), f"not a {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise InputError(str(path), f"unsupported version {manifest.get('version')!r}")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or sum(int(s["count"]) for s in shards) != manifest["count"]:
        raise InputError(str(path), "shard counts do not add up to the manifest count")
    return manifest


def load_shard(
    directory: str | Path, index: int, manifest: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Load shard ``index`` after checking its sha256, counts, names, dtypes and shapes."""
    directory = Path(directory)
    manifest = manifest or read_manifest(directory)
    entry = manifest["shards"][index]
    path = directory / entry["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc})") from None
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise InputError(str(path), "sha256 does not match the manifest (corrupt or replaced)")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    spec = manifest["arrays"]
    if set(arrays) != set(spec):
        raise InputError(str(path), f"arrays {sorted(arrays)} differ from the manifest's")
    for name, a in arrays.items():
        want = spec[name]
        if str(a.dtype) != want["dtype"] or list(a.shape) != [entry["count"], *want["shape"]]:
            raise InputError(
                str(path),
                f"array {name} is {a.dtype}{list(a.shape)}, manifest says "
                f"{want['dtype']}{[entry['count'], *want['shape']]}",
            )
    return arrays


def iter_shards(directory: str | Path) -> Iterator[dict[str, np.ndarray]]:
    """Yield every shard of a folder in order, each verified (see :func:`load_shard`)."""
    manifest = read_manifest(directory)
    for i in range(len(manifest["shards"])):
        yield load_shard(directory, i, manifest)


def verify(directory: str | Path) -> dict[str, Any]:
    """Check every shard of a folder; return the manifest (raises on the first bad shard)."""
    manifest = read_manifest(directory)
    for i in range(len(manifest["shards"])):
        load_shard(directory, i, manifest)
    return manifest
