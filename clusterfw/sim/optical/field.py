"""Optical sky fields: :func:`render_optical` draws the catalogues and paints the images.

Randomness comes from one seed (or Generator), split with :class:`numpy.random.SeedSequence`
into fixed, named streams (richness, members, field galaxies, stars, seeing, noise), so that the
same seed gives bit-identical catalogues and images, and turning one population off leaves the
others unchanged. The noise stream of a band is keyed by the filter's letter and the tile index,
so the r image does not change when g is added, and every coadd tile of a mosaic has its own
noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from astropy.wcs import WCS

from clusterfw.core.errors import ClusterfwError
from clusterfw.core.schema import plugin_field
from clusterfw.sim.optical import galaxies as gal
from clusterfw.sim.optical import members as mem
from clusterfw.sim.optical import render as rnd
from clusterfw.sim.optical import stars as st
from clusterfw.sim.optical.presets import OpticalPreset, get_preset

STREAMS = ("richness", "members", "field", "stars", "seeing", "noise")
FILTER_CODES = "ugrizy"
POPULATIONS = ("members", "field", "stars")
THRESHOLD_SIGMA = 0.05  # galaxy stamps reach down to this fraction of the pixel noise

# name: (numpy dtype, unit, description)
GALAXY_COLUMNS: dict[str, tuple[Any, str, str]] = {
    "halo_id": (np.int64, "", "host halo for cluster members, else -1"),
    "ra": (np.float64, "deg", "right ascension (ICRS)"),
    "dec": (np.float64, "deg", "declination (ICRS)"),
    "z": (np.float64, "", "redshift"),
    "is_member": (np.bool_, "", "cluster member"),
    "is_bcg": (np.bool_, "", "brightest cluster galaxy"),
    "is_red": (np.bool_, "", "red-sequence member (E template)"),
    "spectral_type": (np.float64, "", "CWW type: 0 E, 1 Sbc, 2 Scd, 3 Im (interpolated)"),
    "lum_lstar": (np.float64, "", "L/L* (members; NaN for field galaxies)"),
    "abs_mag_r": (np.float64, "mag", "rest-frame r absolute magnitude (AB, no h)"),
    "r_proj_mpc": (np.float64, "Mpc", "projected distance from the halo centre (members)"),
    "r_lambda_mpc": (np.float64, "Mpc", "R_lambda of the host halo (members)"),
    "r_e_arcsec": (np.float64, "arcsec", "circularised half-light radius"),
    "sersic_n": (np.float64, "", "Sersic index (4 de Vaucouleurs, 1 exponential)"),
    "axis_ratio": (np.float64, "", "minor/major axis ratio"),
    "position_angle": (np.float64, "deg", "major axis, east of north"),
}


@dataclass(frozen=True)
class OpticalFootprint:
    """A celestial WCS and an image shape ``(ny, nx)``."""

    wcs: WCS
    shape: tuple[int, int]

    @classmethod
    def from_center(
        cls,
        ra_deg: float,
        dec_deg: float,
        size_deg: float,
        pixel_arcsec: float,
        projection: str = "TAN",
        height_deg: float | None = None,
    ) -> OpticalFootprint:
        """A ``size_deg`` × ``height_deg`` field centred on (ra, dec), north up, east left.

        The WCS follows :func:`clusterfw.sim.patch.patch_wcs`: reference pixel at the centre,
        square pixels of ``pixel_arcsec``.
        """
        if size_deg <= 0 or (height_deg is not None and height_deg <= 0):
            raise ClusterfwError(f"--size: must be positive (got {size_deg})")
        nx = max(1, int(round(size_deg * 3600.0 / pixel_arcsec)))
        ny = max(1, int(round((height_deg or size_deg) * 3600.0 / pixel_arcsec)))
        w = WCS(naxis=2)
        w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
        w.wcs.crval = [ra_deg % 360.0, dec_deg]
        w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
        w.wcs.cdelt = [-pixel_arcsec / 3600.0, pixel_arcsec / 3600.0]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.radesys = "ICRS"
        w.wcs.set()
        return cls(w, (ny, nx))

    @property
    def pixel_arcsec(self) -> float:
        """Pixel side at the reference point."""
        return float(np.sqrt(self.wcs.proj_plane_pixel_area().to_value("arcsec2")))

    @property
    def area_deg2(self) -> float:
        """Number of pixels × pixel area at the reference point."""
        return float(self.shape[0] * self.shape[1] * (self.pixel_arcsec / 3600.0) ** 2)

    @property
    def center(self) -> tuple[float, float]:
        """(ra, dec) of the image centre, deg."""
        ny, nx = self.shape
        ra, dec = self.wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
        return float(ra), float(dec)

    def to_pixel(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel coordinates."""
        if np.size(ra) == 0:
            return np.zeros(0), np.zeros(0)
        x, y = self.wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
        return np.asarray(x, float), np.asarray(y, float)

    def contains(self, ra: np.ndarray, dec: np.ndarray, margin_pix: Any = 0.0) -> np.ndarray:
        """Which positions fall inside the image, extended by ``margin_pix``."""
        x, y = self.to_pixel(ra, dec)
        ny, nx = self.shape
        m = np.asarray(margin_pix, dtype=float)
        return (x >= -0.5 - m) & (x < nx - 0.5 + m) & (y >= -0.5 - m) & (y < ny - 0.5 + m)


def as_footprint(footprint: Any, pixel_arcsec: float) -> OpticalFootprint:
    """An :class:`OpticalFootprint` from one, a ``(WCS, shape)`` pair, or any object with a
    ``wcs(pixel_arcsec) -> (WCS, shape)`` method (:class:`clusterfw.sim.footprint.Footprint`)."""
    if isinstance(footprint, OpticalFootprint):
        return footprint
    if isinstance(footprint, tuple) and len(footprint) == 2 and isinstance(footprint[0], WCS):
        return OpticalFootprint(footprint[0], (int(footprint[1][0]), int(footprint[1][1])))
    if hasattr(footprint, "wcs") and callable(footprint.wcs):
        w, shape = footprint.wcs(pixel_arcsec)
        return OpticalFootprint(w, (int(shape[0]), int(shape[1])))
    raise TypeError(f"not a footprint: {footprint!r}")


@dataclass
class OpticalField:
    """Catalogues, PSFs, noise levels and (once rendered) the images of an optical field.

    Attributes
    ----------
    preset : OpticalPreset
    footprint : OpticalFootprint
    bands : tuple of str
    psf_fwhm_arcsec : dict
        PSF FWHM per band (the preset's, or drawn per field).
    galaxies : pyarrow.Table
        Members and field galaxies (:data:`GALAXY_COLUMNS` plus ``mag_<band>``, AB).
    stars : pyarrow.Table
        ``ra``, ``dec``, ``mag_<band>``.
    halos : pyarrow.Table
        The input halos that host members, with ``richness`` (the λ the members were drawn
        from), ``richness_members`` (red members with L ≥ 0.2 L* inside R_λ, BCG included) and
        ``r_lambda_mpc``.
    images : dict
        ``band -> (ny, nx)`` float32 nanomaggies; filled by :meth:`render` (or by
        :func:`render_optical` unless ``render=False``).
    seed : int or None
    """

    preset: OpticalPreset
    footprint: OpticalFootprint
    bands: tuple[str, ...]
    psf_fwhm_arcsec: dict[str, float]
    galaxies: pa.Table
    stars: pa.Table
    halos: pa.Table
    noise_seed: np.random.SeedSequence
    seed: int | None = None
    noise: bool = True
    images: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def wcs(self) -> WCS:
        """The footprint's celestial WCS."""
        return self.footprint.wcs

    def kernel(self, band: str) -> np.ndarray:
        """The pixel-integrated Moffat PSF of ``band`` (normalised)."""
        fwhm_pix = self.psf_fwhm_arcsec[band] / self.preset.pixel_arcsec
        return rnd.moffat_kernel(fwhm_pix, self.preset.psf_beta)

    def sigma_pixel(self, band: str) -> float:
        """Per-pixel sky noise (nanomaggies) for the preset's 10σ depth in ``band``."""
        return rnd.sigma_pixel(self.preset.band(band).maglim, self.kernel(band))

    def render(
        self, band: str, footprint: OpticalFootprint | None = None, tile: int = 0
    ) -> np.ndarray:
        """Paint ``band`` on ``footprint`` (default: the field's own), noise keyed by ``tile``."""
        fp = footprint or self.footprint
        img = render_band(self, band, fp, tile)
        if footprint is None:
            self.images[band] = img
        return img


def fits_one_tile(fp: OpticalFootprint, preset: OpticalPreset) -> bool:
    """Whether ``fp`` is at most one coadd tile of ``preset`` (plus its overlaps) on each side."""
    side = max(fp.shape) * fp.pixel_arcsec / 3600.0
    return side <= preset.tile_deg + 2.0 * preset.tile_overlap_arcmin / 60.0


def render_band(field_: OpticalField, band: str, fp: OpticalFootprint, tile: int) -> np.ndarray:
    """The image of one band on ``fp``: galaxies ⊛ PSF + stars + noise (float32 nanomaggies)."""
    preset = field_.preset
    ny, nx = fp.shape
    pix = fp.pixel_arcsec
    kern = field_.kernel(band)
    sigma = field_.sigma_pixel(band)
    fwhm_pix = field_.psf_fwhm_arcsec[band] / pix
    g = field_.galaxies
    re_pix = g["r_e_arcsec"].to_numpy() / pix
    margin = np.minimum(8.0 * re_pix, 512) + kern.shape[0]
    inside = fp.contains(g["ra"].to_numpy(), g["dec"].to_numpy(), margin)
    x, y = fp.to_pixel(g["ra"].to_numpy()[inside], g["dec"].to_numpy()[inside])
    image = np.zeros((1, ny, nx), dtype=np.float32)
    flux = rnd.mag_to_nanomaggies(g[f"mag_{band}"].to_numpy()[inside])
    rnd.paint_sersic(
        image,
        x,
        y,
        flux[None, :],
        re_pix[inside],
        g["sersic_n"].to_numpy()[inside],
        g["axis_ratio"].to_numpy()[inside],
        g["position_angle"].to_numpy()[inside],
        threshold=THRESHOLD_SIGMA * sigma,
    )
    out = rnd.convolve_psf(image[0], kern)
    s = field_.stars
    inside = fp.contains(s["ra"].to_numpy(), s["dec"].to_numpy(), kern.shape[0])
    x, y = fp.to_pixel(s["ra"].to_numpy()[inside], s["dec"].to_numpy()[inside])
    flux = rnd.mag_to_nanomaggies(s[f"mag_{band}"].to_numpy()[inside])
    rnd.paint_points(out, x, y, flux, fwhm_pix, preset.psf_beta)
    if field_.noise:
        ss = field_.noise_seed
        key = (FILTER_CODES.index(band), int(tile))
        rng = np.random.default_rng(
            np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, *key))
        )
        out += rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(sigma)
    return out


def _streams(seed_or_rng: Any) -> tuple[dict[str, np.random.SeedSequence], int | None]:
    if isinstance(seed_or_rng, np.random.Generator):
        root = np.random.SeedSequence(int(seed_or_rng.integers(0, 2**63)))
        seed = None
    elif isinstance(seed_or_rng, np.random.SeedSequence):
        root, seed = seed_or_rng, None
    elif seed_or_rng is None:
        raise ValueError("give a seed or a numpy.random.Generator (simulations are reproducible)")
    else:
        seed = int(seed_or_rng)
        root = np.random.SeedSequence(seed)
    children = [
        np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i))
        for i in range(len(STREAMS))
    ]
    return dict(zip(STREAMS, children, strict=True)), seed


def _table(columns: dict[str, np.ndarray], bands: tuple[str, ...]) -> pa.Table:
    fields, arrays = [], []
    for name, (dtype, unit, desc) in GALAXY_COLUMNS.items():
        arr = pa.array(np.asarray(columns[name], dtype=dtype))
        fields.append(plugin_field(name, arr.type, unit, desc, ""))
        arrays.append(arr)
    for b in bands:
        fields.append(plugin_field(f"mag_{b}", pa.float64(), "mag", f"AB magnitude in {b}", ""))
        arrays.append(pa.array(np.asarray(columns[f"mag_{b}"], dtype=np.float64)))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def field_galaxies(
    rng: np.random.Generator,
    fp: OpticalFootprint,
    r_bright: float,
    r_faint: float,
    bands: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """Field galaxies on the footprint: counts, redshifts, types, sizes, shapes, magnitudes."""
    mag_r = gal.sample_field_mags(rng, fp.area_deg2, r_bright, r_faint)
    n = mag_r.size
    ny, nx = fp.shape
    x = rng.uniform(-0.5, nx - 0.5, n)
    y = rng.uniform(-0.5, ny - 0.5, n)
    ra, dec = fp.wcs.pixel_to_world_values(x, y) if n else (np.zeros(0), np.zeros(0))
    z = gal.sample_field_redshifts(rng, mag_r)
    t = gal.sample_field_types(rng, z)
    abs_r = mag_r - gal.distance_modulus(z) - gal.kcorrection("r", z, t) + gal.Q_EVOL * z
    early = t < 0.5
    r_e = gal.half_light_radius_kpc(abs_r, z, early, rng) * gal.arcsec_per_kpc(z)
    out: dict[str, np.ndarray] = {
        "halo_id": np.full(n, -1, np.int64),
        "ra": np.asarray(ra, float) % 360.0,
        "dec": np.asarray(dec, float),
        "z": z,
        "is_member": np.zeros(n, bool),
        "is_bcg": np.zeros(n, bool),
        "is_red": np.zeros(n, bool),
        "spectral_type": t,
        "lum_lstar": np.full(n, np.nan),
        "abs_mag_r": abs_r,
        "r_proj_mpc": np.full(n, np.nan),
        "r_lambda_mpc": np.full(n, np.nan),
        "r_e_arcsec": r_e,
        "sersic_n": np.where(early, 4.0, 1.0),
        "axis_ratio": np.where(early, rng.uniform(0.5, 1.0, n), rng.uniform(0.2, 1.0, n)),
        "position_angle": rng.uniform(0.0, 180.0, n),
    }
    scatter = np.where(early, gal.RED_SEQUENCE_SCATTER, gal.BLUE_COLOUR_SCATTER)
    for b in bands:
        if b == "r":
            out["mag_r"] = mag_r
        else:
            k = gal.kcorrection(b, z, t) - gal.kcorrection("r", z, t)
            out[f"mag_{b}"] = mag_r + k + scatter * rng.standard_normal(n)
    return out


def render_optical(
    halos: pa.Table,
    footprint: Any,
    preset: str | OpticalPreset = "des",
    seed_or_rng: Any = None,
    bands: tuple[str, ...] = ("g", "r", "i"),
    *,
    render: bool | None = None,
    vary_seeing: bool = False,
    noise: bool = True,
    populations: tuple[str, ...] = POPULATIONS,
    richness_floor: float = 3.0,
) -> OpticalField:
    """Draw members, field galaxies and stars for ``footprint`` and (by default) paint them.

    Parameters
    ----------
    halos : pyarrow.Table
        Halo catalogue with ``ra``, ``dec``, ``z``, ``m500c``, ``m200c``, ``c200c`` and optionally
        ``halo_id`` and ``richness`` (drawn here from the Saro+15 relation when absent).
    footprint : OpticalFootprint, (WCS, shape) or clusterfw.sim.footprint.Footprint
        The sky area; a ``Footprint`` is gridded at the preset's pixel scale.
    preset : str or OpticalPreset
        ``des`` (default) or ``sdss``.
    seed_or_rng : int, SeedSequence or numpy.random.Generator
    bands : tuple of str
        Filters, each in the preset.
    render : bool, optional
        Paint the images now (else call :meth:`OpticalField.render` per band, or
        :func:`clusterfw.sim.optical.io.write_optical`, which renders tile by tile). The default
        paints them when the footprint fits in one coadd tile of the preset (with overlaps)
        (:func:`fits_one_tile`) and leaves larger areas to be written as a mosaic.
    vary_seeing : bool
        Draw the PSF FWHM of each band with the preset's log-normal ``seeing_scatter``.
    noise : bool
        Add sky noise.
    populations : tuple of str
        Any of ``members``, ``field``, ``stars``.
    richness_floor : float
        Halos with λ below this get no members.

    Returns
    -------
    OpticalField
    """
    p = get_preset(preset)
    bands = tuple(str(b) for b in bands)
    for b in bands:
        p.band(b)
    if "r" not in bands:
        bands_cat = (*bands, "r")
    else:
        bands_cat = bands
    bad = set(populations) - set(POPULATIONS)
    if bad:
        raise ClusterfwError(f"--populations: unknown {sorted(bad)} (choose from {POPULATIONS})")
    fp = as_footprint(footprint, p.pixel_arcsec)
    ss, seed = _streams(seed_or_rng)
    r_faint = p.faint_limit_r
    r_bright = p.bright_limit

    # halos: richness for all rows (so a halo's λ does not depend on the footprint), then cut
    need = [c for c in ("ra", "dec", "z", "m500c", "m200c", "c200c") if c not in halos.column_names]
    if need:
        raise ClusterfwError(f"halos: missing column(s) {', '.join(need)}")
    if "richness" not in halos.column_names:
        lam = mem.draw_richness(
            halos["m500c"].to_numpy(), halos["z"].to_numpy(), np.random.default_rng(ss["richness"])
        )
        halos = halos.append_column("richness", pa.array(lam))
    if "halo_id" not in halos.column_names:
        halos = halos.append_column("halo_id", pa.array(np.arange(halos.num_rows, dtype=np.int64)))
    lam = halos["richness"].to_numpy()
    theta_lam = np.degrees(
        mem.r_lambda_mpc(lam)
        / gal.cosmo.angular_diameter_distance(np.maximum(halos["z"].to_numpy(), 1e-3))
    )
    margin = theta_lam * 3600.0 / fp.pixel_arcsec
    keep = (lam >= richness_floor) & fp.contains(
        halos["ra"].to_numpy(), halos["dec"].to_numpy(), margin
    )
    if "members" not in populations:
        keep[:] = False
    hsel = halos.filter(pa.array(keep))

    cols, n_counted = mem.sample_members(
        hsel, np.random.default_rng(ss["members"]), r_faint, bands_cat
    )
    in_fp = fp.contains(cols["ra"], cols["dec"])  # members of any brightness (low-z BCGs)
    cols = {k: v[in_fp] for k, v in cols.items()}
    hsel = hsel.append_column("richness_members", pa.array(n_counted)).append_column(
        "r_lambda_mpc", pa.array(mem.r_lambda_mpc(hsel["richness"].to_numpy()))
    )
    if "field" in populations:
        fcols = field_galaxies(np.random.default_rng(ss["field"]), fp, r_bright, r_faint, bands_cat)
        cols = {k: np.concatenate([cols[k], fcols[k]]) for k in cols}
    galaxies = _table(cols, bands_cat)

    srng = np.random.default_rng(ss["stars"])
    if "stars" in populations:
        ra0, dec0 = fp.center
        b_gal = st.galactic_latitude(ra0, dec0)
        sdict = st.sample_stars(srng, fp.area_deg2, b_gal, r_bright, r_faint)
    else:
        sdict = {k: np.zeros(0) for k in ("mag_r", "g_r", "r_i", "i_z")}
    ns = sdict["mag_r"].size
    ny, nx = fp.shape
    sx, sy = srng.uniform(-0.5, nx - 0.5, ns), srng.uniform(-0.5, ny - 0.5, ns)
    sra, sdec = fp.wcs.pixel_to_world_values(sx, sy) if ns else (np.zeros(0), np.zeros(0))
    star_arrays = {"ra": np.asarray(sra) % 360.0, "dec": np.asarray(sdec)}
    for b in bands_cat:
        star_arrays[f"mag_{b}"] = st.star_mags(sdict, b)
    stars = pa.table(star_arrays)

    fwhm = {b: p.band(b).psf_fwhm_arcsec for b in bands}
    if vary_seeing:
        for b in bands:
            r = np.random.default_rng(
                np.random.SeedSequence(
                    ss["seeing"].entropy,
                    spawn_key=(*ss["seeing"].spawn_key, FILTER_CODES.index(b)),
                )
            )
            fwhm[b] *= math.exp(p.seeing_scatter * r.standard_normal())
    out = OpticalField(p, fp, bands, fwhm, galaxies, stars, hsel, ss["noise"], seed, noise)
    if render or (render is None and fits_one_tile(fp, p)):
        for b in bands:
            out.render(b)
    return out
