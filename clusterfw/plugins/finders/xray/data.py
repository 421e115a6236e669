"""Labelled X-ray + optical cutouts of X-ray candidates, on the network's grid, for training.

Candidates and labels come from :mod:`clusterfw.sim.shards.classifier` (an X-ray field of
``field_deg``, β-model clusters, AGN, background; Gaussian-significance detection S ≥ 5;
``label`` 1 when the matched halo has M500c ≥ 1e14 Msun, kinds fluctuation / AGN / group /
cluster). This module differs from ``clusterfw simulate xray-candidates`` only in how the
optical sky is made, for speed: one optical image of the whole field is rendered at
``OPTICAL_PIXEL_ARCSEC`` (2") with the DES preset's PSF and depth, and every candidate's
optical cutout is cut from it (the shard command renders a 0.263" image per candidate, ≈4×
slower per candidate on a shared CPU), and halos above 5e13 Msun are ``ABUNDANCE_BOOST`` (25)
times as abundant as the mass function (the shard command's default: 10), so that a field
holds more clusters. With ``draws`` > 1 a field's halos, cluster flux map and optical image
serve several X-ray skies (new AGN, background and counts each): ≈ 0.1 CPU-s per extra draw
against ≈ 5 for the field. Labels for a task (Kosiba's ``real`` or ``mass``) come from
:func:`task_labels`.

Every cutout is stored on the network's grid with a margin for shift augmentation:
``STORE_PIX`` (40) pixels of ``NET_PIXEL_ARCSEC`` (8"), i.e. 2×2 sums of the 4" eROSITA
pixels (counts stay Poisson integers, so augmentation can thin them exactly) and 4×4 sums of
the 2" optical pixels (nanomaggies per 8" pixel). Arrays are written to ``.npz`` files
(``allow_pickle=False``), one per chunk of fields.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

NET_PIXEL_ARCSEC = 8.0
NET_PIX = 32
STORE_PIX = 40
OPTICAL_PIXEL_ARCSEC = 2.0
ABUNDANCE_BOOST = 25.0
ARRAYS = (
    "xray_counts",
    "xray_background",
    "xray_exposure",
    "optical",
    "label",
    "kind",
    "snr",
    "ra",
    "dec",
    "field",
    "halo_m500c",
    "halo_z",
    "agn_flux",
    "halo_counts",
    "agn_counts",
    "draw",
)
#: the lightest halo whose detection counts as "real" (the simulator's halo floor)
REAL_MASS = 3e13
#: label tasks: ``real`` (Kosiba's: extended emission of a group or cluster against spurious
#: detections and point sources) and ``mass`` (M500c ≥ 1e14 Msun against everything else)
LABEL_TASKS = ("real", "mass")
#: arrays that files written before ``halo_counts``/``agn_counts``/``draw`` lack (filled NaN/0)
OPTIONAL = ("halo_counts", "agn_counts", "draw")


def block_sum(image: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor × factor`` blocks of the last two axes (shape divisible by ``factor``)."""
    if factor == 1:
        return image
    ny, nx = image.shape[-2:]
    shape = (*image.shape[:-2], ny // factor, factor, nx // factor, factor)
    return image.reshape(shape).sum(axis=(-3, -1))


def field_candidates(
    seed: int,
    f: int,
    field_deg: float = 0.5,
    abundance_boost: float = ABUNDANCE_BOOST,
    draws: int = 1,
) -> dict[str, np.ndarray]:
    """Every detected candidate of field ``f`` (seed ``seed``) whose stored cutouts fit.

    ``draws`` X-ray skies of the field's halos are rendered and searched (draw 0 is the
    field's own; the others have new AGN, background and Poisson counts), all with the one
    optical render of the field: its cost is shared by every draw's candidates.

    Returns
    -------
    dict of numpy.ndarray
        The :data:`ARRAYS`, sample axis first.
    """
    from clusterfw.sim.optical import OpticalFootprint, get_preset, render_optical
    from clusterfw.sim.shards.classifier import KIND, XrayCandidatesConfig, _field, field_halos
    from clusterfw.sim.shards.common import sample_seed

    cfg = XrayCandidatesConfig(
        field_deg=field_deg, positive_fraction=0.0, abundance_boost=abundance_boost
    )
    halos = field_halos(cfg, seed, f)
    # optical: one image of the field, shared by every X-ray draw
    p = get_preset("des").model_copy(update={"pixel_arcsec": OPTICAL_PIXEL_ARCSEC})
    fo = int(round(NET_PIXEL_ARCSEC / OPTICAL_PIXEL_ARCSEC))
    ofp = OpticalFootprint.from_center(cfg.ra_deg, cfg.dec_deg, cfg.field_deg, OPTICAL_PIXEL_ARCSEC)
    of = render_optical(halos, ofp, p, sample_seed(seed, KIND, f, 7), ("g", "r", "i"), render=True)
    oimg = np.stack([of.images[b] for b in ("g", "r", "i")]).astype(np.float32)
    no_raw = STORE_PIX * fo
    ony, onx = oimg.shape[1:]
    hm, hz = halos["m500c"].to_numpy(), halos["z"].to_numpy()
    out: dict[str, list[Any]] = {k: [] for k in ARRAYS}
    clusters = None
    if draws > 1:
        from clusterfw.sim.footprint import Footprint
        from clusterfw.sim.xray import cluster_flux_map

        xfp = Footprint(cfg.ra_deg, cfg.dec_deg, cfg.field_deg, cfg.field_deg, "TAN")
        clusters = cluster_flux_map(halos, xfp, cfg.xray_preset)
    for draw in range(draws):
        fld = _field(cfg, seed, f, halos, draw, clusters)
        xf = fld["xray"]
        xpix = xf.preset.pixel_arcsec
        fx = int(round(NET_PIXEL_ARCSEC / xpix))
        if not math.isclose(fx * xpix, NET_PIXEL_ARCSEC):
            raise ValueError(f'X-ray pixel {xpix}" does not divide {NET_PIXEL_ARCSEC}"')
        nx_raw = STORE_PIX * fx
        ny, nx = xf.counts.shape
        # the candidate sits at the centre of the stored cutout (pixel centre nx_raw/2 - 0.5)
        cy = np.rint(fld["y0"] + fld["n"] // 2).astype(np.int64)
        cx = np.rint(fld["x0"] + fld["n"] // 2).astype(np.int64)
        y0, x0 = cy - nx_raw // 2, cx - nx_raw // 2
        ok = (y0 >= 0) & (x0 >= 0) & (y0 + nx_raw <= ny) & (x0 + nx_raw <= nx)
        ox, oy = ofp.to_pixel(fld["ra"], fld["dec"])
        oy0 = np.floor(np.asarray(oy) - (no_raw - 1) / 2 + 0.5).astype(np.int64)
        ox0 = np.floor(np.asarray(ox) - (no_raw - 1) / 2 + 0.5).astype(np.int64)
        ok &= (oy0 >= 0) & (ox0 >= 0) & (oy0 + no_raw <= ony) & (ox0 + no_raw <= onx)
        for j in np.flatnonzero(ok):
            sl = np.s_[y0[j] : y0[j] + nx_raw, x0[j] : x0[j] + nx_raw]
            c = block_sum(xf.counts[sl].astype(np.int64), fx).astype(np.uint16)
            out["xray_counts"].append(c)
            out["xray_background"].append(block_sum(xf.background[sl].astype(np.float64), fx))
            out["xray_exposure"].append(block_sum(xf.exposure[sl].astype(np.float64), fx) / fx**2)
            osl = np.s_[:, oy0[j] : oy0[j] + no_raw, ox0[j] : ox0[j] + no_raw]
            out["optical"].append(block_sum(oimg[osl], fo))
            kind = int(fld["kind"][j])
            b = int(fld["best"][j])
            out["label"].append(1 if kind == 3 else 0)
            out["kind"].append(kind)
            out["snr"].append(fld["snr"][j])
            out["ra"].append(fld["ra"][j])
            out["dec"].append(fld["dec"][j])
            out["field"].append(f)
            out["halo_m500c"].append(hm[b] if b >= 0 else np.nan)
            out["halo_z"].append(hz[b] if b >= 0 else np.nan)
            out["agn_flux"].append(fld["agn_flux"][j])
            out["halo_counts"].append(fld["halo_counts"][j])
            out["agn_counts"].append(fld["agn_counts"][j])
            out["draw"].append(draw)
    dtypes = {
        "xray_counts": np.uint16,
        "xray_background": np.float32,
        "xray_exposure": np.float32,
        "optical": np.float32,
        "label": np.int8,
        "kind": np.int8,
        "snr": np.float32,
        "ra": np.float64,
        "dec": np.float64,
        "field": np.int32,
        "halo_m500c": np.float64,
        "halo_z": np.float64,
        "agn_flux": np.float64,
        "halo_counts": np.float64,
        "agn_counts": np.float64,
        "draw": np.int16,
    }
    shapes = {
        "xray_counts": (STORE_PIX, STORE_PIX),
        "xray_background": (STORE_PIX, STORE_PIX),
        "xray_exposure": (STORE_PIX, STORE_PIX),
        "optical": (3, STORE_PIX, STORE_PIX),
    }
    return {
        k: np.asarray(v, dtype=dtypes[k]).reshape(len(v), *shapes.get(k, ()))
        for k, v in out.items()
    }


def simulate_split(
    directory: str | Path,
    seed: int,
    fields: range,
    field_deg: float = 0.5,
    draws: int = 1,
    abundance_boost: float = ABUNDANCE_BOOST,
) -> Path:
    """Simulate ``fields`` of seed ``seed`` into ``directory/cand_<seed>_<first>-<last>.npz``.

    With ``draws`` > 1 X-ray skies per field the name gets ``_d<draws>``, with another
    ``abundance_boost`` than :data:`ABUNDANCE_BOOST` ``_b<boost>``. A file already there is
    reused (the cache); files are written atomically.
    """
    from clusterfw.core.atomic import write_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tail = f"_d{draws}" if draws > 1 else ""
    tail += f"_b{abundance_boost:g}" if abundance_boost != ABUNDANCE_BOOST else ""
    path = directory / f"cand_{seed}_{fields.start:04d}-{fields.stop - 1:04d}{tail}.npz"
    if path.exists():
        return path
    parts = [field_candidates(seed, f, field_deg, abundance_boost, draws) for f in fields]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in ARRAYS}

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **merged)

    return write_atomic(path, _write)


def task_labels(d: dict[str, np.ndarray], task: str = "real") -> tuple[np.ndarray, np.ndarray]:
    """Labels and kinds of candidates for a label task.

    ``real`` (Kosiba's task: his positives are spectroscopically confirmed XXL clusters, groups
    included; his negatives the candidates experts rejected — no emission, point sources,
    nearby galaxies, detector edges): 1 when the detection is matched to a halo of M500c ≥
    :data:`REAL_MASS` (every halo the simulator draws) whose expected counts are at least
    those of the brightest AGN within one PSF FWHM, else 0. Kinds: 0 fluctuation, 1 AGN
    (including a halo match that an AGN outshines), 2 group (3e13–1e14), 3 cluster (≥ 1e14).

    ``mass``: 1 when the matched halo has M500c ≥ 1e14 Msun (the stored ``label``); kinds as
    stored.

    Returns
    -------
    labels : numpy.ndarray
        int8.
    kinds : numpy.ndarray
        int8.
    """
    if task == "mass":
        return d["label"].astype(np.int8), d["kind"].astype(np.int8)
    if task != "real":
        raise ValueError(f"label task {task!r} is not one of {LABEL_TASKS}")
    m = d["halo_m500c"]
    halo = np.isfinite(m) & (m >= REAL_MASS)
    outshone = np.nan_to_num(d["agn_counts"], nan=0.0) > np.nan_to_num(d["halo_counts"], nan=np.inf)
    real = halo & ~outshone
    kinds = d["kind"].astype(np.int8).copy()
    kinds[halo & outshone] = 1
    return real.astype(np.int8), kinds


def load_candidates(paths: list[Path]) -> dict[str, np.ndarray]:
    """Concatenate candidate files written by :func:`simulate_split` (no pickle)."""
    parts = []
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            n = z["label"].size
            fill = {"halo_counts": np.full(n, np.nan), "agn_counts": np.full(n, np.nan)}
            fill["draw"] = np.zeros(n, np.int16)
            parts.append({k: z[k] if k in z.files else fill[k] for k in ARRAYS})
    return {k: np.concatenate([p[k] for p in parts]) for k in ARRAYS}


if __name__ == "__main__":  # pragma: no cover - data generation helper for background runs
    import sys

    out, seed, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    step = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    n_draws = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    boost = float(sys.argv[7]) if len(sys.argv) > 7 else ABUNDANCE_BOOST
    for a in range(first, last, step):
        simulate_split(out, seed, range(a, min(a + step, last)), 0.5, n_draws, boost)
        print("done", a, flush=True)
