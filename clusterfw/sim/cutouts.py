"""Labelled training cutouts straight from simulated patches, without writing whole maps.

A cutout is ``size × size`` pixels (default 32 × 32 at 0.25', i.e. 8' × 8', as DeepSZ) in every
band. It is *positive* when a halo above the mass cut (default ``Mvir > 2e14 Msun``) and redshift
cut (``z > 0.25``) has its centre inside the central ``core_arcmin × core_arcmin`` box (6' × 6'),
as in DeepSZ §1.2; the cut and the mass definition are parameters.

Two sampling modes:

``grid``
    The DeepSZ tiling: cutouts on a regular grid with a ``stride_arcmin`` (6') stride, every cutout
    of every patch kept — the natural, very unbalanced class ratio (~1–2 % positive).
``balanced``
    A fixed ``positive_fraction``: each qualifying halo gives one positive cutout, its centre
    offset uniformly inside the core box; negatives are random windows with no qualifying halo
    in the core. The abundance of halos above ``mass_cut / 2.5`` (in M500c) is boosted so each
    patch yields many positives.

Each patch is simulated with :func:`clusterfw.sim.patch.simulate_patch` (all components), so the
cutouts see exactly the sky the full-map simulator makes.

Labels: :data:`LABELS` names the two standard definitions — ``deepsz`` (Mvir ≥ 2e14 Msun and
z > 0.25, DeepSZ §1.2; the defaults of :func:`make_cutouts`) and ``sz`` (M500c ≥ 1.5e14 Msun at
any redshift, the mass cut SZ surveys quote).

Settings: with ``setting="randomised"`` (or any name of :mod:`clusterfw.sim.settings`) every
simulated patch — i.e. every group of cutouts cut from it — draws its own parameters (profile
family, Y–M, sources, noise, beams …); the draws are recorded per patch in the metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from clusterfw.core.schema import plugin_field
from clusterfw.sim.config import PatchConfig, SimConfig

#: Standard label definitions: ``mass_cut`` (Msun), ``mass_definition`` and ``z_min``.
LABELS: dict[str, dict[str, Any]] = {
    "deepsz": {"mass_cut": 2e14, "mass_definition": "mvir", "z_min": 0.25},
    "sz": {"mass_cut": 1.5e14, "mass_definition": "m500c", "z_min": 0.0},
}
SETTING_KEY = b"clusterfw.sim_setting"


def label_options(labels: str = "deepsz", **overrides: Any) -> dict[str, Any]:
    """``mass_cut``, ``mass_definition`` and ``z_min`` of a :data:`LABELS` preset.

    Parameters
    ----------
    labels : {"deepsz", "sz"}
        The preset.
    **overrides
        Values that replace the preset's (``None`` values are ignored).

    Returns
    -------
    dict
        Keyword arguments for :func:`make_cutouts`.
    """
    if labels not in LABELS:
        raise ValueError(f"unknown labels {labels!r} (choose from {', '.join(LABELS)})")
    out = dict(LABELS[labels])
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out


META_COLUMNS: dict[str, tuple[pa.DataType, str, str]] = {
    "cutout_id": (pa.int64(), "", "index of the cutout in its batch"),
    "label": (pa.int8(), "", "1 if a qualifying halo lies in the central core box"),
    "patch": (pa.int64(), "", "index of the simulated patch the cutout comes from"),
    "x0": (pa.int32(), "pix", "x pixel of the cutout's first column in its patch"),
    "y0": (pa.int32(), "pix", "y pixel of the cutout's first row in its patch"),
    "ra": (pa.float64(), "deg", "cutout centre right ascension"),
    "dec": (pa.float64(), "deg", "cutout centre declination"),
    "n_qualifying": (pa.int16(), "", "number of qualifying halos in the core box"),
    "halo_id": (
        pa.int64(),
        "",
        "most massive qualifying halo in the core box, else most massive halo (-1: none)",
    ),
    "halo_m500c": (pa.float64(), "solMass", "its M500c (NaN if none)"),
    "halo_m200c": (pa.float64(), "solMass", "its M200c"),
    "halo_mvir": (pa.float64(), "solMass", "its virial mass"),
    "halo_z": (pa.float64(), "", "its redshift"),
    "halo_theta500_arcmin": (pa.float64(), "arcmin", "its θ500"),
    "halo_y500": (pa.float64(), "arcmin2", "its Y500"),
    "halo_dx_arcmin": (pa.float64(), "arcmin", "its x offset from the cutout centre"),
    "halo_dy_arcmin": (pa.float64(), "arcmin", "its y offset from the cutout centre"),
}


@dataclass
class CutoutBatch:
    """A batch of labelled cutouts.

    Attributes
    ----------
    images : numpy.ndarray
        ``(n, n_band, size, size)`` float32, µK_CMB (beam-convolved, with noise).
    labels : numpy.ndarray
        ``(n,)`` int8, 1 = cluster-containing.
    ymaps : numpy.ndarray or None
        ``(n, size, size)`` float32 unsmoothed Compton-y of the same windows.
    meta : pyarrow.Table
        One row per cutout (see :data:`META_COLUMNS`).
    bands : tuple of str
        Band names, in the order of ``images`` axis 1.
    """

    images: np.ndarray
    labels: np.ndarray
    ymaps: np.ndarray | None
    meta: pa.Table
    bands: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.size)


def _meta_table(cols: dict[str, np.ndarray], metadata: dict[bytes, bytes] | None) -> pa.Table:
    fields = [plugin_field(k, t, unit, desc) for k, (t, unit, desc) in META_COLUMNS.items()]
    arrays = [pa.array(np.asarray(cols[k]), type=t) for k, (t, _, _) in META_COLUMNS.items()]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def label_windows(
    halos: dict[str, np.ndarray],
    x0: np.ndarray,
    y0: np.ndarray,
    size: int,
    core_px: float,
    mass: np.ndarray,
    mass_cut: float,
    z_min: float,
) -> dict[str, np.ndarray]:
    """Labels and primary-halo facts for windows with lower-left pixels ``(x0, y0)``."""
    xc = x0 + (size - 1) / 2.0
    yc = y0 + (size - 1) / 2.0
    dx = halos["x_pix"][None, :] - xc[:, None]
    dy = halos["y_pix"][None, :] - yc[:, None]
    in_core = (np.abs(dx) <= core_px / 2.0) & (np.abs(dy) <= core_px / 2.0)
    qualifies = (mass >= mass_cut) & (halos["z"] > z_min)
    n_q = (in_core & qualifies[None, :]).sum(axis=1)
    # primary halo: the most massive qualifying halo in the core, else the most massive one
    weight = np.where(in_core, mass[None, :] + np.where(qualifies, 1e30, 0.0)[None, :], -np.inf)
    best = np.argmax(weight, axis=1) if mass.size else np.zeros(x0.size, dtype=int)
    has = in_core.any(axis=1) if mass.size else np.zeros(x0.size, dtype=bool)
    out = {"label": (n_q > 0).astype(np.int8), "n_qualifying": n_q.astype(np.int16)}
    out["has"] = has
    out["best"] = best
    out["dx"] = dx[np.arange(x0.size), best] if mass.size else np.zeros(x0.size)
    out["dy"] = dy[np.arange(x0.size), best] if mass.size else np.zeros(x0.size)
    return out


def _cut(arr: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: int) -> np.ndarray:
    """Extract windows from ``(..., ny, nx)`` ``arr`` → ``(n, ..., size, size)``, vectorised."""
    iy = y0[:, None] + np.arange(size)[None, :]
    ix = x0[:, None] + np.arange(size)[None, :]
    out = arr[..., iy[:, :, None], ix[:, None, :]]  # (..., n, size, size)
    return np.moveaxis(out, -3, 0)


def make_cutouts(
    n: int,
    rng: np.random.Generator | int,
    size: int = 32,
    pixel_arcmin: float = 0.25,
    *,
    config: SimConfig | None = None,
    mode: Literal["grid", "balanced"] = "balanced",
    positive_fraction: float = 0.5,
    mass_cut: float = 2e14,
    mass_definition: Literal["mvir", "m200c", "m500c"] = "mvir",
    z_min: float = 0.25,
    core_arcmin: float = 6.0,
    stride_arcmin: float = 6.0,
    patch_arcmin: float = 96.0,
    abundance_boost: float | None = None,
    with_y: bool = True,
    setting: str = "default",
) -> CutoutBatch:
    """Simulate ``n`` labelled cutouts.

    Parameters
    ----------
    n : int
        Number of cutouts.
    rng : numpy.random.Generator or int
        Source of all randomness (a seed makes the batch reproducible).
    size : int
        Cutout side in pixels.
    pixel_arcmin : float
        Pixel side (0.25' → 32 px = 8').
    config : SimConfig, optional
        Physics/instrument parameters (bands, components …); geometry is set here.
    mode : {"balanced", "grid"}
        See the module docstring.
    positive_fraction : float
        Fraction of positives in ``balanced`` mode.
    mass_cut, mass_definition, z_min : float, str, float
        A halo qualifies when its ``mass_definition`` mass ≥ ``mass_cut`` (Msun) and z > z_min.
    core_arcmin : float
        Side of the central box a qualifying halo must lie in.
    stride_arcmin : float
        Grid stride in ``grid`` mode.
    patch_arcmin : float
        Side of each simulated patch.
    abundance_boost : float, optional
        Halo-abundance boost above ``mass_cut / 2.5`` (M500c); default 6 in ``balanced`` mode
        and 1 in ``grid`` mode.
    with_y : bool
        Also return Compton-y cutouts.
    setting : str
        Named setting (:data:`clusterfw.sim.settings.SETTINGS`): ``default`` keeps ``config``;
        others draw new parameters for every simulated patch (recorded in the metadata under
        ``clusterfw.sim_setting``: one entry per patch with its draws).

    Returns
    -------
    CutoutBatch
    """
    from clusterfw.sim.patch import as_generator, simulate_patch
    from clusterfw.sim.settings import SETTINGS, apply_setting

    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r} (choose from {', '.join(SETTINGS)})")
    rng, _seed = as_generator(rng)
    base = (config or SimConfig()).model_dump()
    for key in ("size_deg", "height_deg", "pixel_arcmin", "abundance_boost", "boost_m500c_min"):
        base.pop(key, None)
    boost = abundance_boost if abundance_boost is not None else (6.0 if mode == "balanced" else 1.0)
    pcfg = PatchConfig(
        **base,
        size_deg=patch_arcmin / 60.0,
        pixel_arcmin=pixel_arcmin,
        abundance_boost=boost,
        boost_m500c_min=mass_cut / 2.5,
    )
    core_px = core_arcmin / pixel_arcmin
    n_pos_target = int(round(n * positive_fraction)) if mode == "balanced" else 0
    n_neg_target = n - n_pos_target
    imgs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    metas: list[dict[str, np.ndarray]] = []
    n_pos = n_neg = n_total = 0
    patch_index = 0
    drawn: list[dict[str, Any]] = []
    while n_total < n:
        patch_rng = rng.spawn(1)[0]
        cfg_i = pcfg
        if setting != "default":
            cfg_i = apply_setting(pcfg, setting, patch_rng)
            drawn.append(
                {
                    "patch": patch_index,
                    **cfg_i.setting_draws,
                    "bands": [b.model_dump() for b in cfg_i.bands],
                }
            )
        res = simulate_patch(cfg_i, patch_rng, keep_ymap=with_y)
        ny, nx = pcfg.shape
        if size > min(nx, ny):
            raise ValueError(f"cutout size {size} exceeds the patch ({nx}x{ny} pixels)")
        h = {k: res.halos.column(k).to_numpy() for k in res.halos.column_names}
        mass = h[mass_definition]
        if mode == "grid":
            stride = max(1, int(round(stride_arcmin / pixel_arcmin)))
            gx = np.arange(0, nx - size + 1, stride)
            gy = np.arange(0, ny - size + 1, stride)
            yy, xx = np.meshgrid(gy, gx, indexing="ij")
            x0, y0 = xx.ravel(), yy.ravel()
            x0, y0 = x0[: n - n_total], y0[: n - n_total]
        else:
            q = np.flatnonzero((mass >= mass_cut) & (h["z"] > z_min))
            q = rng.permutation(q)[: max(n_pos_target - n_pos, 0)]
            off = rng.uniform(-core_px / 2.0, core_px / 2.0, (2, q.size)) * 0.98
            px0 = np.rint(h["x_pix"][q] - off[0] - (size - 1) / 2.0).astype(int)
            py0 = np.rint(h["y_pix"][q] - off[1] - (size - 1) / 2.0).astype(int)
            px0 = np.clip(px0, 0, nx - size)
            py0 = np.clip(py0, 0, ny - size)
            want_neg = min(
                n_neg_target - n_neg,
                int(
                    math.ceil(
                        max(q.size, 1) * (1 - positive_fraction) / max(positive_fraction, 1e-9)
                    )
                )
                + 1,
            )
            cand = max(4 * want_neg, 16)
            nx0 = rng.integers(0, nx - size + 1, cand)
            ny0 = rng.integers(0, ny - size + 1, cand)
            lab = label_windows(h, nx0, ny0, size, core_px, mass, mass_cut, z_min)["label"]
            keep = np.flatnonzero(lab == 0)[: max(want_neg, 0)]
            x0 = np.concatenate([px0, nx0[keep]])
            y0 = np.concatenate([py0, ny0[keep]])
        lw = label_windows(h, x0, y0, size, core_px, mass, mass_cut, z_min)
        imgs.append(_cut(res.sky.maps, x0, y0, size).astype(np.float32))
        if with_y and res.ymap is not None:
            ys.append(_cut(res.ymap, x0, y0, size).astype(np.float32))
        ra, dec = res.sky.wcs.pixel_to_world_values(x0 + (size - 1) / 2.0, y0 + (size - 1) / 2.0)
        best, has = lw["best"], lw["has"]

        def pick(col: str, fill: float = np.nan, best=best, has=has, h=h) -> np.ndarray:
            vals = h[col][best] if h[col].size else np.zeros(best.size)
            return np.where(has, vals, fill)

        metas.append(
            {
                "label": lw["label"],
                "patch": np.full(x0.size, patch_index),
                "x0": x0,
                "y0": y0,
                "ra": np.asarray(ra) % 360.0,
                "dec": np.asarray(dec),
                "n_qualifying": lw["n_qualifying"],
                "halo_id": pick("halo_id", -1).astype(np.int64),
                "halo_m500c": pick("m500c"),
                "halo_m200c": pick("m200c"),
                "halo_mvir": pick("mvir"),
                "halo_z": pick("z"),
                "halo_theta500_arcmin": pick("theta500_arcmin"),
                "halo_y500": pick("y500"),
                "halo_dx_arcmin": np.where(has, lw["dx"] * pixel_arcmin, np.nan),
                "halo_dy_arcmin": np.where(has, lw["dy"] * pixel_arcmin, np.nan),
            }
        )
        n_pos += int(lw["label"].sum())
        n_neg += int((lw["label"] == 0).sum())
        n_total += x0.size
        patch_index += 1
    images = np.concatenate(imgs)[:n]
    cols = {k: np.concatenate([m[k] for m in metas])[:n] for k in metas[0]}
    order = rng.permutation(images.shape[0]) if mode == "balanced" else np.arange(images.shape[0])
    images = images[order]
    cols = {k: v[order] for k, v in cols.items()}
    cols["cutout_id"] = np.arange(images.shape[0], dtype=np.int64)
    ymaps = np.concatenate(ys)[:n][order] if ys else None
    metadata = {
        b"clusterfw.sim_config": pcfg.model_dump_json().encode(),
        b"clusterfw.cutout_params": repr(
            dict(
                size=size,
                pixel_arcmin=pixel_arcmin,
                mode=mode,
                mass_cut=mass_cut,
                mass_definition=mass_definition,
                z_min=z_min,
                core_arcmin=core_arcmin,
            )
        ).encode(),
    }
    if setting != "default":
        metadata[SETTING_KEY] = json.dumps({"setting": setting, "patches": drawn}).encode()
    return CutoutBatch(
        images,
        cols["label"].astype(np.int8),
        ymaps,
        _meta_table(cols, metadata),
        tuple(b.name for b in pcfg.bands),
    )


def iter_cutouts(
    n_total: int, rng: np.random.Generator | int, chunk_size: int = 4096, **kwargs: Any
) -> Iterator[CutoutBatch]:
    """Yield :class:`CutoutBatch` chunks of at most ``chunk_size`` until ``n_total`` are made."""
    from clusterfw.sim.patch import as_generator

    rng, _ = as_generator(rng)
    done = 0
    while done < n_total:
        k = min(chunk_size, n_total - done)
        yield make_cutouts(k, rng.spawn(1)[0], **kwargs)
        done += k


def write_cutout_shards(
    directory: str | Path,
    n_total: int,
    rng: np.random.Generator | int,
    chunk_size: int = 4096,
    fmt: Literal["npz", "parquet"] = "npz",
    prefix: str = "cutouts",
    **kwargs: Any,
) -> list[Path]:
    """Write ``n_total`` cutouts in shards of ``chunk_size`` (``.npz`` or Parquet), atomically.

    ``.npz`` shards hold ``images``, ``labels``, ``ymaps`` (if any), ``bands`` and every metadata
    column as plain arrays (load with ``allow_pickle=False``). Parquet shards hold one row per
    cutout with ``image`` (flattened ``n_band·size·size`` float32 list), ``y_image`` and the
    metadata columns; the shapes are in the schema metadata.
    """
    from clusterfw.core.atomic import write_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, batch in enumerate(iter_cutouts(n_total, rng, chunk_size, **kwargs)):
        if fmt == "npz":
            path = directory / f"{prefix}_{i:05d}.npz"
            arrays: dict[str, np.ndarray] = {
                "images": batch.images,
                "labels": batch.labels,
                "bands": np.array(batch.bands),
            }
            if batch.ymaps is not None:
                arrays["ymaps"] = batch.ymaps
            setting_json = (batch.meta.schema.metadata or {}).get(SETTING_KEY)
            if setting_json is not None:
                arrays["setting_json"] = np.array(setting_json.decode())
            for name in batch.meta.column_names:
                arrays[f"meta_{name}"] = batch.meta.column(name).to_numpy()

            def _write(tmp: Path, arrays=arrays) -> None:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **arrays)

            paths.append(write_atomic(path, _write))
        else:
            import pyarrow.parquet as pq

            path = directory / f"{prefix}_{i:05d}.parquet"
            n, nb, s, _ = batch.images.shape
            table = batch.meta
            flat = pa.FixedSizeListArray.from_arrays(pa.array(batch.images.reshape(-1)), nb * s * s)
            table = table.append_column(pa.field("image", flat.type), flat)
            if batch.ymaps is not None:
                yflat = pa.FixedSizeListArray.from_arrays(pa.array(batch.ymaps.reshape(-1)), s * s)
                table = table.append_column(pa.field("y_image", yflat.type), yflat)
            meta = dict(table.schema.metadata or {})
            meta[b"clusterfw.cutout_shape"] = repr((nb, s, s)).encode()
            meta[b"clusterfw.cutout_bands"] = ",".join(batch.bands).encode()
            table = table.replace_schema_metadata(meta)
            paths.append(
                write_atomic(path, lambda tmp, t=table: pq.write_table(t, tmp, compression="zstd"))
            )
    return paths
