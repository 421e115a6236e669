"""X-ray + optical cutouts of X-ray cluster candidates for a classifier (Kosiba et al.).

Candidates come from a real (if simple) detection on simulated X-ray fields, so the false ones
look like what an X-ray pipeline hands a classifier:

1. An X-ray field (``field_deg`` square, default 0.5°, preset ``erosita`` or ``xmm``) is
   rendered by :func:`clusterfw.sim.xray.render_xray`: β-model clusters from the universe's
   L_X–M relation with scatter, AGN from the Georgakakis et al. logN–logS, sky and particle
   background, PSF, Poisson counts. Halos from the Tinker08 mass function above
   ``halo_floor`` (3e13 Msun, 0.02 < z < ``z_max``) over the field plus a 5' margin; the
   abundance above ``label_mass / 2`` is multiplied by ``abundance_boost`` (default 10, as in
   the mm cutouts' balanced mode) so that fields hold enough clusters.
2. **Detection**: a single-scale Gaussian-smoothed significance map,
   ``S = G_σ ⊛ (counts − background) / √(G_σ² ⊛ background)`` (the known expected background),
   with ``σ = detect_sigma_arcsec`` (30"); candidates are its local maxima (in a
   ``3σ``-wide window) above ``snr_min`` (5) whose cutout fits in the field.
3. **Labels**: a candidate is matched to the most massive halo above the floor whose centre is
   within ``max(1', θ500/2)`` of the peak. ``label = 1`` (kind ``cluster``) when that halo has
   M500c ≥ ``label_mass`` (1e14); otherwise ``label = 0`` with kind ``group`` (a real halo below
   the cut), ``agn`` (an AGN brighter than ``agn_flux_min`` = 1e-14 erg/s/cm² within 1 PSF
   FWHM: a point source) or ``fluctuation`` (a background peak or a chance superposition of
   faint AGN and groups).
4. **Balance**: candidates are taken field by field in order; a negative is kept only while the
   kept negatives stay at most ``(1 − f)/f`` times the kept positives (+1), ``f`` =
   ``positive_fraction`` (0.5; 0 keeps every candidate: the natural mix).

Each kept candidate gets an X-ray cutout (counts uint16 and exposure float32 on the preset's
pixels, ``size_arcmin`` square, cut from the rendered field) and an optical g, r, i cutout of
the same sky rendered there and only there (:func:`clusterfw.sim.optical.render_optical` with
every halo of the field, float16 nanomaggies, summed over ``optical_rebin²`` pixels).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from clusterfw.core.errors import ClusterfwError
from clusterfw.sim.shards.common import (
    check_range,
    halo_table,
    offsets_to_radec,
    rebin,
    require,
    sample_field_halos,
    sample_rng,
    sample_seed,
    to_float16,
)

KIND = "xray-candidates"
KINDS = ("fluctuation", "agn", "group", "cluster")
HALO_MARGIN_ARCMIN = 5.0
MAX_EMPTY_FIELDS = 200


class XrayCandidatesConfig(BaseModel):
    """Options of :func:`candidate_samples` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field_deg: float = 0.5
    size_arcmin: float = 4.0
    xray_preset: str = "erosita"
    optical_preset: str = "des"
    bands: tuple[str, ...] = ("g", "r", "i")
    optical_rebin: int = 4
    label_mass: float = 1e14
    halo_floor: float = 3e13
    z_max: float = 1.2
    abundance_boost: float = 10.0
    detect_sigma_arcsec: float = 30.0
    snr_min: float = 5.0
    agn_flux_min: float = 1e-14
    positive_fraction: float = 0.5
    ra_deg: float = 60.0
    dec_deg: float = -45.0

    def validate_options(self) -> None:
        """One-line errors naming the option, before any work."""
        from clusterfw.sim import xray
        from clusterfw.sim.optical import get_preset

        fin = math.isfinite
        require(fin(self.field_deg) and 0 < self.field_deg <= 2, "--field-size", "must be (0, 2]")
        require(
            fin(self.size_arcmin) and 0 < self.size_arcmin <= self.field_deg * 30,
            "--size-arcmin",
            f"must be positive and at most half the field ({self.field_deg * 30:g}')",
        )
        xp = xray.get_preset(self.xray_preset)
        require(
            self.size_arcmin * 60 / xp.pixel_arcsec >= 8, "--size-arcmin", "under 8 X-ray pixels"
        )
        op = get_preset(self.optical_preset)
        require(len(self.bands) > 0, "--bands", "no band given")
        for b in self.bands:
            op.band(b)
        require(1 <= self.optical_rebin <= 64, "--optical-rebin", "must be 1-64")
        nopt = round(self.size_arcmin * 60 / op.pixel_arcsec) // self.optical_rebin
        require(nopt >= 8, "--optical-rebin", f"leaves {nopt} optical pixels (at least 8)")
        require(nopt <= 2048, "--optical-rebin", f"leaves {nopt} optical pixels (at most 2048)")
        require(
            fin(self.halo_floor) and 10**12.9 <= self.halo_floor <= self.label_mass,
            "--halo-floor",
            "must be between 10^12.9 Msun and --label-mass",
        )
        require(fin(self.label_mass) and self.label_mass <= 1e16, "--label-mass", "at most 1e16")
        check_range("--z-max", 0.02, self.z_max)
        require(self.z_max <= 3, "--z-max", "at most 3")
        require(
            fin(self.abundance_boost) and 1 <= self.abundance_boost <= 1000,
            "--abundance-boost",
            "must be 1-1000",
        )
        require(
            fin(self.detect_sigma_arcsec) and self.detect_sigma_arcsec > 0,
            "--detect-sigma",
            "must be positive",
        )
        require(fin(self.snr_min) and self.snr_min > 0, "--snr-min", "must be positive")
        require(fin(self.agn_flux_min) and self.agn_flux_min > 0, "--agn-flux-min", "positive")
        require(
            0 <= self.positive_fraction < 1,
            "--positive-fraction",
            "must be in [0, 1) (0: keep every candidate)",
        )
        require(-80 <= self.dec_deg <= 80, "--dec", "must be within -80..80")


def detect(
    counts: np.ndarray, background: np.ndarray, sigma_pix: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks ``(y, x, snr)`` of the Gaussian-smoothed significance map (see module docstring)."""
    from scipy import ndimage

    signal = ndimage.gaussian_filter(counts.astype(np.float64) - background, sigma_pix)
    # G² is a Gaussian of σ/√2 normalised to 1/(4πσ²)
    var = ndimage.gaussian_filter(background.astype(np.float64), sigma_pix / math.sqrt(2.0))
    var /= 4.0 * math.pi * sigma_pix**2
    snr = signal / np.sqrt(np.maximum(var, 1e-12))
    size = max(3, int(round(3 * sigma_pix)) | 1)
    peak = (snr == ndimage.maximum_filter(snr, size=size, mode="nearest")) & (snr > 0)
    yy, xx = np.nonzero(peak)
    return yy, xx, snr[yy, xx]


def field_halos(cfg: XrayCandidatesConfig, seed: int, f: int) -> Any:
    """The halo table of field ``f`` (its stream 0): the field plus a 5' margin."""
    rng = sample_rng(seed, KIND, f, 0)
    side = cfg.field_deg + 2 * HALO_MARGIN_ARCMIN / 60.0
    z_rng = (0.02, cfg.z_max)
    split = cfg.label_mass / 2.0
    m_lo, z_lo = sample_field_halos(rng, side * side, cfg.halo_floor, split, z_rng)
    boosted_area = side * side * cfg.abundance_boost
    m_hi, z_hi = sample_field_halos(rng, boosted_area, max(split, cfg.halo_floor), 1e16, z_rng)
    m = np.concatenate([m_lo, m_hi])
    z = np.concatenate([z_lo, z_hi])
    dx, dy = rng.uniform(-side / 2, side / 2, (2, m.size))
    ra, dec = offsets_to_radec(cfg.ra_deg, cfg.dec_deg, dx, dy)
    return halo_table(m, z, ra, dec, rng)


def _field(
    cfg: XrayCandidatesConfig,
    seed: int,
    f: int,
    halos: Any = None,
    draw: int = 0,
    clusters: Any = None,
) -> dict[str, Any]:
    """Render X-ray field ``f`` and its labelled candidate list.

    ``draw`` > 0 renders another X-ray sky of the same halos (new AGN, background and Poisson
    counts: stream ``1000 + draw`` instead of 1), so one optical render serves several X-ray
    exposures of a field; ``clusters`` (:func:`clusterfw.sim.xray.cluster_flux_map` of the
    field) spares repainting the halos for each draw.
    """
    from clusterfw.sim import xray
    from clusterfw.sim.footprint import Footprint

    if halos is None:
        halos = field_halos(cfg, seed, f)
    fp = Footprint(cfg.ra_deg, cfg.dec_deg, cfg.field_deg, cfg.field_deg, "TAN")
    p = xray.get_preset(cfg.xray_preset)
    stream = sample_rng(seed, KIND, f, 1 if draw == 0 else 1000 + draw)
    xf = xray.render_xray(halos, fp, p, stream, clusters=clusters)
    pix_arcsec = p.pixel_arcsec
    yy, xx, snr = detect(xf.counts, xf.background, cfg.detect_sigma_arcsec / pix_arcsec)
    n = int(round(cfg.size_arcmin * 60 / pix_arcsec))
    ny, nx = xf.counts.shape
    y0, x0 = yy - n // 2, xx - n // 2
    ok = (snr >= cfg.snr_min) & (y0 >= 0) & (x0 >= 0) & (y0 + n <= ny) & (x0 + n <= nx)
    order = np.argsort(-snr[ok], kind="stable")
    yy, xx, snr, y0, x0 = (a[ok][order] for a in (yy, xx, snr, y0, x0))
    cra, cdec = xf.wcs.pixel_to_world_values(xx, yy)
    cra, cdec = np.asarray(cra) % 360.0, np.asarray(cdec)
    # matching (flat-sky offsets in arcmin)
    cosd = math.cos(math.radians(cfg.dec_deg))
    hra, hdec = halos["ra"].to_numpy(), halos["dec"].to_numpy()
    hm = halos["m500c"].to_numpy()
    th = halos["theta500_arcmin"].to_numpy()
    d = np.hypot(
        ((cra[:, None] - hra[None, :] + 180) % 360 - 180) * cosd, cdec[:, None] - hdec[None, :]
    )
    d *= 60.0
    within = d <= np.maximum(1.0, th / 2.0)[None, :]
    best = np.where(within.any(axis=1), np.argmax(np.where(within, hm[None, :], -1), axis=1), -1)
    agn = xf.agn
    ad = (
        np.hypot(
            ((cra[:, None] - agn["ra"].to_numpy()[None, :] + 180) % 360 - 180) * cosd,
            cdec[:, None] - agn["dec"].to_numpy()[None, :],
        )
        * 3600.0
    )
    aflux = np.where(ad <= p.psf_fwhm_arcsec, agn["flux"].to_numpy()[None, :], 0.0)
    agn_flux = aflux.max(axis=1, initial=0.0)
    # expected counts (exposure at the candidate) of the matched halo and of that AGN
    iy = np.clip(np.rint(yy).astype(np.int64), 0, ny - 1)
    ix = np.clip(np.rint(xx).astype(np.int64), 0, nx - 1)
    halo_counts = np.where(best >= 0, xf.cluster_counts[np.maximum(best, 0)], 0.0)
    agn_counts = agn_flux * p.ecf * xf.exposure[iy, ix]
    kind = np.where(
        best >= 0,
        np.where(hm[np.maximum(best, 0)] >= cfg.label_mass, 3, 2),
        np.where(agn_flux >= cfg.agn_flux_min, 1, 0),
    )
    return {
        "halos": halos,
        "xray": xf,
        "x0": x0,
        "y0": y0,
        "n": n,
        "ra": cra,
        "dec": cdec,
        "snr": snr,
        "best": best,
        "agn_flux": agn_flux,
        "kind": kind,
        "halo_counts": halo_counts,
        "agn_counts": agn_counts,
        "dist": np.where(best >= 0, d[np.arange(best.size), np.maximum(best, 0)], np.nan),
    }


def _optical_cutout(
    cfg: XrayCandidatesConfig, fld: dict[str, Any], ra: float, dec: float, seed: Any
) -> np.ndarray:
    from clusterfw.sim.optical import OpticalFootprint, get_preset, render_optical

    p = get_preset(cfg.optical_preset)
    fp = OpticalFootprint.from_center(ra, dec, cfg.size_arcmin / 60.0, p.pixel_arcsec)
    of = render_optical(fld["halos"], fp, p, seed, tuple(cfg.bands), render=True)
    imgs = np.stack([rebin(of.images[b].astype(np.float32), cfg.optical_rebin) for b in cfg.bands])
    return to_float16(imgs)


def _pack(
    cfg: XrayCandidatesConfig, seed: int, f: int, j: int, fld: dict[str, Any]
) -> dict[str, np.ndarray]:
    xf = fld["xray"]
    n, y0, x0 = fld["n"], int(fld["y0"][j]), int(fld["x0"][j])
    counts = xf.counts[y0 : y0 + n, x0 : x0 + n]
    if counts.max(initial=0) > np.iinfo(np.uint16).max:
        raise RuntimeError("X-ray counts exceed uint16")
    ra, dec = float(fld["ra"][j]), float(fld["dec"][j])
    b = int(fld["best"][j])
    h = fld["halos"]

    def halo(col: str) -> float:
        return float(h[col][b].as_py()) if b >= 0 else math.nan

    kind = int(fld["kind"][j])
    return {
        "xray_counts": counts.astype(np.uint16),
        "xray_exposure": xf.exposure[y0 : y0 + n, x0 : x0 + n].astype(np.float32),
        "optical": _optical_cutout(cfg, fld, ra, dec, sample_seed(seed, KIND, f, 100 + j)),
        "label": np.asarray(1 if kind == 3 else 0, np.int8),
        "kind": np.asarray(kind, np.int8),
        "snr": np.asarray(fld["snr"][j], np.float32),
        "ra": np.asarray(ra),
        "dec": np.asarray(dec),
        "field": np.asarray(f, np.int32),
        "halo_m500c": np.asarray(halo("m500c")),
        "halo_z": np.asarray(halo("z")),
        "halo_lx500": np.asarray(halo("lx500")),
        "halo_fx500": np.asarray(halo("fx500")),
        "halo_richness": np.asarray(halo("richness")),
        "halo_offset_arcmin": np.asarray(fld["dist"][j]),
        "agn_flux": np.asarray(fld["agn_flux"][j]),
    }


def candidate_samples(
    cfg: XrayCandidatesConfig, seed: int, n: int
) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``n`` candidates, field after field, balanced as in the module docstring."""
    f = made = n_pos = n_neg = 0
    empty = 0
    ratio = (1 - cfg.positive_fraction) / cfg.positive_fraction if cfg.positive_fraction else None
    while made < n:
        fld = _field(cfg, seed, f)
        labels = fld["kind"] == 3
        pos_here = int(labels.sum())
        took = 0
        for j in range(labels.size):
            if made >= n:
                break
            if not labels[j] and ratio is not None:
                if n_neg + 1 > ratio * (n_pos + pos_here) + 1:
                    continue
            yield _pack(cfg, seed, f, j, fld)
            made += 1
            took += 1
            n_pos += int(labels[j])
            n_neg += int(not labels[j])
        empty = 0 if took else empty + 1
        if empty >= MAX_EMPTY_FIELDS:
            raise ClusterfwError(
                f"--label-mass: {MAX_EMPTY_FIELDS} fields in a row gave no usable candidate "
                "(lower --label-mass or --snr-min, or raise --abundance-boost)"
            )
        f += 1
