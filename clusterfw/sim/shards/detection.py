"""Optical fields with cluster boxes for an object detector (Deep-CEE, Chan & Stott 2019).

Each sample is one small g, r, i field (default 0.2° square at the DES-like preset, summed over
``rebin × rebin`` pixels: 0.2° at 0.263" is 2738² pixels, rebinned ×2 to 1369², close to the
1000–2000-pixel SDSS frames of Deep-CEE). Only the field is rendered
(:func:`clusterfw.sim.optical.render_optical` on the field's own footprint), never a map.

Clusters
    With probability ``empty_fraction`` a field holds no labelled cluster; otherwise it holds
    ``k`` uniform in 1..``max_clusters``, their (M500c, z) drawn from the Tinker08 mass function
    over ``m_range × z_range`` (``mass_distribution='mass-function'``, default) or flat in
    log M and z (``flat``), their centres uniform in the central ``1 − 2·edge_margin`` of the
    field. Every other halo of the field (and of a 0.05° margin around it, so members spill in)
    is drawn from the mass function between ``background_floor`` (3e13) and the lower end of
    ``m_range``, at 0 < z < 3: all halos above the mass cut in a field are labelled, none below.
    Members, field galaxies, stars, PSF and noise are those of the optical renderer (richness
    from the universe's correlated observables).
Seeing and depth per field (augmentation)
    Each field draws one factor ``s`` uniform in ``seeing_range`` multiplying every band's PSF
    FWHM, and one offset ``d`` uniform in ``depth_range`` added to every band's 10σ depth;
    both are stored (``psf_fwhm_arcsec``, ``maglim`` per band).
Box rule
    A square, axis-aligned box centred on the halo's true centre whose half-side is the 80th
    percentile of the Chebyshev distance ``max(|Δx|, |Δy|)`` of the cluster's *bright members*
    — members (BCG included) in the image brighter than ``m*_r(z) + 2`` (``m*`` of the red
    sequence at the cluster's redshift) — so the box holds at least 80 % of them; with fewer than
    5 bright members the half-side is the projected R500 (θ500). The half-side is at least
    2 PSF FWHM. Boxes are stored in the stored (rebinned) image's pixel-edge frame: x along
    columns, y along rows, the corner of the first pixel at (0, 0), ``(x_min, y_min, x_max,
    y_max)``, clipped to the image (``box_clipped`` flags it); padded to ``max_clusters`` rows with
    NaN, ``n_boxes`` real ones first. Row 0 of each image is the south edge (north up, east
    left).

Images are float16 nanomaggies (the noise is ~0.004 nanomaggies per native DES pixel; float16
resolves that to 1e-3 relative and holds up to 65504, clipped).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from clusterfw.sim.shards.common import (
    check_range,
    draw_mass_redshift,
    halo_table,
    offsets_to_radec,
    rebin,
    require,
    sample_field_halos,
    sample_rng,
    sample_seed,
    to_float16,
)

KIND = "optical-fields"
BOX_FRACTION = 0.8
BRIGHT_DMAG = 2.0
MIN_BRIGHT = 5
HALO_MARGIN_DEG = 0.05


class OpticalFieldsConfig(BaseModel):
    """Options of :func:`field_samples` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size_deg: float = 0.2
    preset: str = "des"
    bands: tuple[str, ...] = ("g", "r", "i")
    rebin: int = 2
    max_clusters: int = 3
    empty_fraction: float = 0.2
    m_min: float = 1e14
    m_max: float = 1e15
    z_min: float = 0.05
    z_max: float = 0.7
    mass_distribution: str = "mass-function"
    background_floor: float = 3e13
    edge_margin: float = 0.15
    seeing_min: float = 0.85
    seeing_max: float = 1.25
    depth_min: float = -0.5
    depth_max: float = 0.3
    ra_deg: float = 60.0
    dec_deg: float = -45.0

    def validate_options(self) -> None:
        """One-line errors naming the option, before any work."""
        from clusterfw.sim.optical import get_preset

        require(
            math.isfinite(self.size_deg) and 0 < self.size_deg <= 1.0,
            "--size",
            f"must be in (0, 1] degrees (got {self.size_deg:g})",
        )
        preset = get_preset(self.preset)
        require(len(self.bands) > 0, "--bands", "no band given")
        require(len(set(self.bands)) == len(self.bands), "--bands", "repeated band")
        for b in self.bands:
            preset.band(b)
        require(1 <= self.rebin <= 64, "--rebin", f"must be 1-64 (got {self.rebin})")
        npix = round(self.size_deg * 3600 / preset.pixel_arcsec) // self.rebin
        require(npix >= 16, "--rebin", f"leaves {npix} pixels per side (at least 16)")
        require(0 <= self.max_clusters <= 50, "--max-clusters", "must be 0-50")
        require(0 <= self.empty_fraction <= 1, "--empty-fraction", "must be between 0 and 1")
        check_range("--mass-range", self.m_min, self.m_max)
        require(1e13 <= self.m_min and self.m_max <= 1e16, "--mass-range", "within 1e13-1e16")
        check_range("--z-range", self.z_min, self.z_max)
        require(self.z_max <= 3.0, "--z-range", "upper end at most 3")
        require(
            self.mass_distribution in ("flat", "mass-function"),
            "--mass-distribution",
            f"choose flat or mass-function (got {self.mass_distribution!r})",
        )
        require(
            10**12.9 <= self.background_floor <= self.m_min,
            "--background-floor",
            "must be between 10^12.9 Msun and the lower mass end",
        )
        require(0 <= self.edge_margin < 0.5, "--edge-margin", "must be in [0, 0.5)")
        check_range("--seeing-range", self.seeing_min, self.seeing_max)
        check_range("--depth-range", self.depth_min, self.depth_max, positive=False)
        require(-80 <= self.dec_deg <= 80, "--dec", "must be within -80..80")


@dataclass
class DetectionField:
    """One rendered field (full objects, for tests) and its boxes (native pixels)."""

    field: Any
    halos: Any
    n_clusters: int
    boxes_native: np.ndarray  # (k, 4) unclipped, native pixel-centre frame (x0, y0, x1, y1)
    bright_members: list[np.ndarray]  # (n_i, 2) pixel positions per cluster


def _field_preset(cfg: OpticalFieldsConfig, rng: np.random.Generator) -> Any:
    from clusterfw.sim.optical import get_preset

    p = get_preset(cfg.preset)
    s = rng.uniform(cfg.seeing_min, cfg.seeing_max)
    d = rng.uniform(cfg.depth_min, cfg.depth_max)
    bands = {
        name: b.model_copy(
            update={"psf_fwhm_arcsec": b.psf_fwhm_arcsec * s, "maglim": b.maglim + d}
        )
        for name, b in p.bands.items()
    }
    return p.model_copy(update={"bands": bands})


def render_detection_field(
    cfg: OpticalFieldsConfig, seed: int, index: int, render: bool = True
) -> DetectionField:
    """Render field ``index``: its labelled clusters are the first ``n_clusters`` halo rows.

    With ``render=False`` only the catalogues (halos, galaxies, boxes) are drawn, identical to
    the rendered field's (every population has its own random stream), without painting.
    """
    from clusterfw.sim.optical import OpticalFootprint, render_optical
    from clusterfw.sim.optical.galaxies import mstar_apparent

    rng = sample_rng(seed, KIND, index, 0)
    preset = _field_preset(cfg, rng)
    k = 0
    if cfg.max_clusters > 0 and rng.random() >= cfg.empty_fraction:
        k = int(rng.integers(1, cfg.max_clusters + 1))
    m_t, z_t = draw_mass_redshift(
        rng, k, (cfg.m_min, cfg.m_max), (cfg.z_min, cfg.z_max), cfg.mass_distribution
    )
    half = cfg.size_deg / 2 * (1 - 2 * cfg.edge_margin)
    dx_t, dy_t = rng.uniform(-half, half, (2, k))
    side = cfg.size_deg + 2 * HALO_MARGIN_DEG
    m_b, z_b = sample_field_halos(rng, side * side, cfg.background_floor, cfg.m_min, (1e-3, 3.0))
    dx_b, dy_b = rng.uniform(-side / 2, side / 2, (2, m_b.size))
    ra, dec = offsets_to_radec(
        cfg.ra_deg, cfg.dec_deg, np.concatenate([dx_t, dx_b]), np.concatenate([dy_t, dy_b])
    )
    halos = halo_table(np.concatenate([m_t, m_b]), np.concatenate([z_t, z_b]), ra, dec, rng)
    fp = OpticalFootprint.from_center(cfg.ra_deg, cfg.dec_deg, cfg.size_deg, preset.pixel_arcsec)
    field = render_optical(
        halos, fp, preset, sample_seed(seed, KIND, index, 1), tuple(cfg.bands), render=render
    )
    # boxes
    g = field.galaxies
    member = g["is_member"].to_numpy()
    hid = g["halo_id"].to_numpy()
    mag_r = g["mag_r"].to_numpy()
    gx, gy = fp.to_pixel(g["ra"].to_numpy(), g["dec"].to_numpy())
    cx, cy = fp.to_pixel(ra[:k], dec[:k])
    pix = fp.pixel_arcsec
    min_half = 2.0 * max(preset.band(b).psf_fwhm_arcsec for b in cfg.bands) / pix
    boxes = np.zeros((k, 4))
    bright: list[np.ndarray] = []
    for j in range(k):
        lim = float(mstar_apparent(np.array(z_t[j]), "r")) + BRIGHT_DMAG
        sel = member & (hid == j) & (mag_r < lim)
        pts = np.stack([gx[sel], gy[sel]], axis=1)
        bright.append(pts)
        if sel.sum() >= MIN_BRIGHT:
            cheb = np.maximum(np.abs(pts[:, 0] - cx[j]), np.abs(pts[:, 1] - cy[j]))
            h = float(np.quantile(cheb, BOX_FRACTION, method="inverted_cdf"))
        else:
            h = float(halos["theta500_arcmin"][j].as_py()) * 60.0 / pix
        h = max(h, min_half)
        boxes[j] = (cx[j] - h, cy[j] - h, cx[j] + h, cy[j] + h)
    return DetectionField(field, halos, k, boxes, bright)


def pack_detection_field(cfg: OpticalFieldsConfig, det: DetectionField) -> dict[str, np.ndarray]:
    """The arrays of one sample: images, boxes, labels, seeing and depth."""
    f = det.field
    r = cfg.rebin
    images = np.stack([rebin(f.images[b].astype(np.float32), r) for b in cfg.bands])
    ny, nx = images.shape[1:]
    kmax = cfg.max_clusters
    k = det.n_clusters
    boxes = np.full((kmax, 4), np.nan, np.float32)
    clipped = np.zeros(kmax, np.bool_)
    if k:
        # native pixel centres -> pixel edges (+0.5) -> stored pixels (/ rebin)
        e = (det.boxes_native + 0.5) / r
        c = np.column_stack(
            [np.clip(e[:, 0], 0, nx), np.clip(e[:, 1], 0, ny), np.clip(e[:, 2], 0, nx),
             np.clip(e[:, 3], 0, ny)]
        )  # fmt: skip
        boxes[:k] = c
        clipped[:k] = np.any(np.abs(c - e) > 0, axis=1)
    h = det.halos
    out: dict[str, np.ndarray] = {
        "images": to_float16(images),
        "psf_fwhm_arcsec": np.array([f.psf_fwhm_arcsec[b] for b in cfg.bands], np.float32),
        "maglim": np.array([f.preset.band(b).maglim for b in cfg.bands], np.float32),
        "n_boxes": np.asarray(k, np.int16),
        "boxes": boxes,
        "box_clipped": clipped,
    }
    fp = f.footprint
    cx, cy = fp.to_pixel(h["ra"].to_numpy()[:k], h["dec"].to_numpy()[:k])
    cols = {
        "box_m500c": h["m500c"].to_numpy()[:k],
        "box_z": h["z"].to_numpy()[:k],
        "box_richness": h["richness"].to_numpy()[:k],
        "box_ra": h["ra"].to_numpy()[:k],
        "box_dec": h["dec"].to_numpy()[:k],
        "box_x": (cx + 0.5) / r,
        "box_y": (cy + 0.5) / r,
        "box_n_bright": np.array([len(b) for b in det.bright_members], float),
    }
    for name, vals in cols.items():
        a = np.full(kmax, np.nan)
        a[:k] = vals
        out[name] = a
    return out


def field_samples(cfg: OpticalFieldsConfig, seed: int, n: int) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``n`` packed fields (field ``i`` depends only on ``seed`` and ``i``)."""
    for i in range(n):
        yield pack_detection_field(cfg, render_detection_field(cfg, seed, i))


def bcg_positions(directory: str | Path) -> list[np.ndarray]:
    """The simulated BCG of every labelled cluster of a stored folder, in stored pixels.

    Deep-CEE's ground-truth centre is the catalogue's BCG, not a halo centre; the simulator
    puts a fraction of its BCGs off the halo centre (:mod:`clusterfw.sim.optical.members`), so
    both truths are worth measuring against. The catalogues are drawn again from the folder's
    manifest (seed and options; nothing is painted) and checked against the stored centres.

    Parameters
    ----------
    directory : str or Path
        A ``clusterfw simulate optical-fields`` folder.

    Returns
    -------
    list of numpy.ndarray
        One ``(n_boxes, 2)`` array per field: ``x, y`` in the stored (rebinned) image's
        pixel-edge frame, the frame of ``box_x`` / ``box_y``. A cluster whose BCG is outside
        the field gets its halo centre.
    """
    from clusterfw.core.errors import InputError
    from clusterfw.sim.shards.common import iter_shards, read_manifest

    m = read_manifest(directory)
    if m.get("kind") != KIND:
        raise InputError(str(directory), f"not an {KIND} folder (kind {m.get('kind')!r})")
    cfg = OpticalFieldsConfig(**m["config"])
    seed = int(m["seed"])
    out: list[np.ndarray] = []
    index = 0
    for shard in iter_shards(directory):
        for j in range(shard["images"].shape[0]):
            det = render_detection_field(cfg, seed, index, render=False)
            k = det.n_clusters
            stored = np.stack([shard["box_x"][j, :k], shard["box_y"][j, :k]], axis=1)
            g = det.field.galaxies
            fp = det.field.footprint
            bcg = g.filter(g["is_bcg"])
            hid = bcg["halo_id"].to_numpy()
            bx, by = fp.to_pixel(bcg["ra"].to_numpy(), bcg["dec"].to_numpy())
            cx, cy = fp.to_pixel(det.halos["ra"].to_numpy()[:k], det.halos["dec"].to_numpy()[:k])
            centres = np.stack([(cx + 0.5) / cfg.rebin, (cy + 0.5) / cfg.rebin], axis=1)
            if k and not np.allclose(centres, stored, atol=1e-3):
                raise InputError(
                    str(directory),
                    f"field {index}: catalogue does not match its stored centres "
                    "(the simulator changed since it was written)",
                )
            pos = centres.copy()
            for c in range(k):
                hit = np.flatnonzero(hid == c)
                if hit.size:
                    pos[c] = ((bx[hit[0]] + 0.5) / cfg.rebin, (by[hit[0]] + 0.5) / cfg.rebin)
            out.append(pos)
            index += 1
    return out
