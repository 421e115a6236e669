"""Red-sequence photometric redshift of a detection box, from the g, r, i images themselves.

Sources
    Peaks of the r + i image smoothed by a Gaussian of the PSF's σ, above ``DETECT_SIGMA``
    times the smoothed image's robust noise, at least 2 PSF FWHM apart (a 5 × 5 local-maximum
    filter at the finest). Fluxes in a circular aperture of radius ``APERTURE_FWHM`` × the
    widest band's PSF FWHM, the same in g, r and i (pixels summed with sub-pixel weights of a
    3 × 3 super-sampling), with errors from each band's robust sky noise. The fluxes are also
    measured in a wider aperture of radius ``TOTAL_APERTURE_ARCSEC`` (10–20 proper kpc at
    0.2 < z < 0.7, a metric-like aperture), for the central-galaxy rule only. A PSF-sized
    aperture takes the colours at the best signal-to-noise, but it holds a smaller part of an
    extended galaxy than of a compact one, so it ranks a large BCG below its satellites (on the
    validation fields the simulated BCGs came out ~1.5 mag too faint), and its point-source
    aperture corrections misjudge an extended galaxy's colours when the bands' seeing
    differs; the wide aperture holds nearly all of the PSF in every band.
Red-sequence model
    The colours of the simulator's red sequence: the Coleman, Wu & Weedman E template through
    the LSST g, r, i throughputs (:func:`clusterfw.sim.optical.galaxies.template_colour`,
    ``data/kcorr_cww_lsst.npz``) and m*_r(z) of the same passively brightening population
    (:func:`~clusterfw.sim.optical.galaxies.mstar_apparent`), on a grid of z from 0.02 to 1.0.
Estimate
    For each z of the grid, every source brighter than m*_r(z) + 1.5 (and fainter than
    m*_r(z) − 3.5) counts with a normalised colour likelihood ``(0.05² / √(v_gr v_ri))
    exp(−χ²/2)``, χ² = Σ over g−r and r−i of (observed − model)² / v, v = σ_phot² + 0.05²
    (0.05: the intrinsic red-sequence scatter), so noisy faint sources spread their weight
    instead of matching every redshift. Sources in the box are also weighted by a Gaussian of
    σ = ``RADIAL`` × the box side around its centre. The same (unweighted) sum over the sources
    outside the box within a square of 5 box sides around it (clipped to the image: a local
    background), scaled to the box's weighted area, is subtracted. ``z`` is the peak of the
    smoothed excess; ``z_err`` the spread of the excess within ±0.1 of it over √(excess), at
    least 0.005 (1 + z); ``n_red`` the excess at the peak. No excess above 1 gives NaN.
Second red sequence
    A second local maximum of the smoothed excess more than ``SECOND_DZ`` (1 + z) away from the
    peak that reaches ``AMBIGUOUS_RATIO`` of it and ``SECOND_MIN`` is a second structure along
    the line of sight — on the validation fields most redshift outliers are two clusters
    projected within 1'. ``z`` stays the higher peak, ``z_alt`` is the other one and ``z_err``
    becomes at least ``|z_alt − z|``: a larger error bar instead of a confident wrong redshift.
Central galaxy (``centring="central"``, the default)
    redMaPPer-like (Rykoff et al. 2014, 2016): candidate centrals are the red-sequence galaxies
    at the estimated z (colours within 3σ, not brighter than m* − 4.5) within ``search_kpc``
    (proper, at z) and 0.35 box sides of the box centre; each is scored
    ``gamma · ln(L/L*) + ln(ρ_RS + 0.05)``, ``ρ_RS`` the red-sequence weight of the other
    galaxies within a Gaussian of ``sigma_kpc`` around it — bright *and* surrounded by red
    members, so a bright isolated interloper loses to a slightly fainter galaxy in the middle
    of the red sequence (:func:`pick_central`). A central farther than ``max_offset_kpc`` from
    the box centre gives way to the box centre. ``centring="brightest"`` is the session-5 rule:
    the brightest (in i) red-sequence source within 0.35 box sides (:func:`pick_bcg`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DETECT_SIGMA = 5.0
APERTURE_FWHM = 1.0
#: Radius (arcsec) of the wide aperture that ranks candidate centrals by their light (r for
#: ``central``, i for ``brightest``) and gives their colours a second, seeing-robust test.
TOTAL_APERTURE_ARCSEC = 3.0
Z_GRID = np.round(np.arange(0.02, 1.0001, 0.005), 4)
RS_SCATTER = 0.05
FAINT_DMAG = 1.5
BRIGHT_DMAG = 3.5
BCG_REACH = 0.35
RADIAL = 0.25
MOFFAT_BETA = 3.0
BACKGROUND_SIDES = 5.0
#: A second red-sequence peak this far (× (1 + z)) from the first, reaching this fraction of it,
#: makes the redshift ambiguous (chosen on the validation fields; see docs/finders/frcnn.md).
SECOND_DZ = 0.1
AMBIGUOUS_RATIO = 0.3
SECOND_MIN = 0.6
#: Central-galaxy defaults (proper kpc; chosen on the validation fields).
CENTRAL_SEARCH_KPC = 600.0
CENTRAL_SIGMA_KPC = 100.0
CENTRAL_GAMMA = 2.0
CENTRAL_MAX_OFFSET_KPC = 200.0


@lru_cache(maxsize=1)
def red_sequence_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(g − r, r − i, m*_r)`` of the E template on :data:`Z_GRID`."""
    from clusterfw.sim.optical.galaxies import mstar_apparent, template_colour

    z = Z_GRID
    gr = np.asarray(template_colour("g", "r", z, 0.0), float)
    ri = np.asarray(template_colour("r", "i", z, 0.0), float)
    ms = np.asarray(mstar_apparent(z, "r"), float)
    return gr, ri, ms


@dataclass
class Sources:
    """Sources of an image: pixel positions (input pixels) and g, r, i fluxes with errors."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray  # (n, 3) nanomaggies
    err: np.ndarray  # (n, 3)
    flux_wide: np.ndarray | None = None  # (n, 3) fluxes in TOTAL_APERTURE_ARCSEC
    err_wide: np.ndarray | None = None  # (n, 3)

    def __len__(self) -> int:
        return int(self.x.size)

    def subset(self, keep: np.ndarray) -> Sources:
        """The sources selected by the boolean or index array ``keep``."""
        if self.flux_wide is None or self.err_wide is None:
            return Sources(self.x[keep], self.y[keep], self.flux[keep], self.err[keep])
        return Sources(self.x[keep], self.y[keep], self.flux[keep], self.err[keep],
                       self.flux_wide[keep], self.err_wide[keep])  # fmt: skip

    def wide(self) -> Sources:
        """The same sources with their wide-aperture fluxes (themselves when not measured)."""
        if self.flux_wide is None or self.err_wide is None:
            return self
        return Sources(self.x, self.y, self.flux_wide, self.err_wide)

    @property
    def mag(self) -> np.ndarray:
        """AB magnitudes (NaN for non-positive fluxes)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.flux > 0, 22.5 - 2.5 * np.log10(self.flux), np.nan)

    def colours(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``g − r``, ``r − i`` and their errors."""
        m = self.mag
        with np.errstate(divide="ignore", invalid="ignore"):
            dm = 1.0857 * self.err / np.abs(self.flux)
        gr = m[:, 0] - m[:, 1]
        ri = m[:, 1] - m[:, 2]
        egr = np.hypot(dm[:, 0], dm[:, 1])
        eri = np.hypot(dm[:, 1], dm[:, 2])
        return gr, ri, egr, eri


def robust_sigma(a: np.ndarray) -> float:
    """1.4826 × the median absolute deviation of the finite values."""
    v = a[np.isfinite(a)]
    if v.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


#: Images above this many pixels estimate their noise on a regular subsample (memory).
NOISE_SAMPLE_PIXELS = 1 << 22


def _thin(a: np.ndarray) -> np.ndarray:
    """``a`` itself, or every k-th row and column of it when it exceeds NOISE_SAMPLE_PIXELS."""
    k = int(np.ceil(np.sqrt(a.size / NOISE_SAMPLE_PIXELS)))
    return a if k <= 1 else a[::k, ::k]


def find_sources(
    images: np.ndarray, pixel_arcsec: float, psf_fwhm_arcsec: np.ndarray | float
) -> Sources:
    """Detect sources and measure aperture fluxes (see the module docstring).

    Parameters
    ----------
    images : numpy.ndarray
        ``(3, ny, nx)`` g, r, i in nanomaggies per pixel (NaN: no data).
    pixel_arcsec : float
    psf_fwhm_arcsec : float or (3,) array
        PSF FWHM of each band (one value: the same for all). Each band's aperture flux is
        divided by the fraction of its Moffat PSF (β = 3) inside the aperture, so that the
        colours are not biased by the seeing differences between bands.
    """
    from scipy import ndimage

    img = np.asarray(images, np.float32)  # NaN (no data) counts as 0 below; no full copy
    fw = np.broadcast_to(np.asarray(psf_fwhm_arcsec, float), (3,))
    psf_fwhm = float(np.max(fw))
    fwhm_pix = max(psf_fwhm / pixel_arcsec, 0.8)
    det = np.add(img[1], img[2])
    np.nan_to_num(det, copy=False, nan=0.0)
    det = ndimage.gaussian_filter(det, fwhm_pix / 2.3548)  # the sum is freed here
    thin = _thin(det)
    noise = robust_sigma(thin[thin != 0]) if np.any(thin != 0) else 0.0
    if not noise > 0:
        e = np.zeros(0)
        return Sources(e, e, np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)))
    size = max(5, int(2 * round(fwhm_pix)) + 1)
    peak = det == ndimage.maximum_filter(det, size=size)
    peak &= det > DETECT_SIGMA * noise
    ys, xs = np.nonzero(peak)
    del peak, det, thin
    # aperture photometry with 3x3 sub-pixel weights
    rad = max(APERTURE_FWHM * fwhm_pix, 1.0)
    rad_wide = max(TOTAL_APERTURE_ARCSEC / pixel_arcsec, rad)
    (flux, npix), (wide, npix_wide) = _aperture_fluxes(img, xs, ys, (rad, rad_wide))
    sig_pix = np.array([robust_sigma(v[(v != 0) & np.isfinite(v)]) for v in map(_thin, img)])
    err = np.broadcast_to(sig_pix * np.sqrt(npix), flux.shape).copy()
    err_wide = np.broadcast_to(sig_pix * np.sqrt(npix_wide), wide.shape).copy()
    # aperture corrections of each band's Moffat PSF (point sources)
    apcor = 1.0 / moffat_enclosed(rad * pixel_arcsec, fw, MOFFAT_BETA)
    flux *= apcor[None, :]
    err *= apcor[None, :]
    return Sources(xs.astype(float), ys.astype(float), flux, err, wide, err_wide)


def _aperture_fluxes(
    img: np.ndarray, xs: np.ndarray, ys: np.ndarray, radii: tuple[float, ...]
) -> list[tuple[np.ndarray, float]]:
    """For each radius (pixels): the ``(n, bands)`` sums of ``img`` in circles of that radius
    (3 × 3 sub-pixel weights) around the pixels ``(ys, xs)``, and the circle's area in pixels.
    One pass over the sources: each stamp is cut once, at the largest radius."""
    r_int = int(np.ceil(max(radii))) + 1
    off = np.arange(-r_int, r_int + 1)
    sub = (np.arange(3) - 1) / 3.0
    dy, dx = np.meshgrid(off, off, indexing="ij")
    fracs = np.zeros((len(radii), *dy.shape))
    for sy in sub:
        for sx in sub:
            d = np.hypot(dy + sy, dx + sx)
            for i, rad in enumerate(radii):
                fracs[i] += d <= rad
    fracs /= 9.0
    ny, nx = img.shape[1:]
    flux = np.zeros((len(radii), xs.size, img.shape[0]))
    for k, (y, x) in enumerate(zip(ys, xs, strict=True)):
        y0, y1 = max(0, y - r_int), min(ny, y + r_int + 1)
        x0, x1 = max(0, x - r_int), min(nx, x + r_int + 1)
        w = fracs[:, y0 - y + r_int : y1 - y + r_int, x0 - x + r_int : x1 - x + r_int]
        stamp = np.nan_to_num(img[:, y0:y1, x0:x1], nan=0.0)
        flux[:, k] = np.einsum("byx,ryx->rb", stamp, w)
    return [(flux[i], float(fracs[i].sum())) for i in range(len(radii))]


def moffat_enclosed(radius: float, fwhm: np.ndarray, beta: float) -> np.ndarray:
    """Fraction of a Moffat PSF's flux within ``radius`` (same unit as ``fwhm``)."""
    alpha = np.asarray(fwhm, float) / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return 1.0 - (1.0 + (radius / alpha) ** 2) ** (1.0 - beta)


@dataclass
class PhotoZ:
    """A box's red-sequence redshift and the central-galaxy position (input pixels).

    ``z_alt``: the redshift of a second red sequence in the box (NaN when none; see the module
    docstring), ``ambiguous`` whether there is one.
    """

    z: float
    z_err: float
    n_red: float
    x: float
    y: float
    centred: bool
    z_alt: float = float("nan")
    ambiguous: bool = False


def _weights(src: Sources) -> tuple[np.ndarray, np.ndarray]:
    """``(n_src, n_z)`` red-sequence weights and the magnitude window mask."""
    gr_m, ri_m, ms = red_sequence_model()
    gr, ri, egr, eri = src.colours()
    mag_r = src.mag[:, 1]
    v_gr = egr[:, None] ** 2 + RS_SCATTER**2
    v_ri = eri[:, None] ** 2 + RS_SCATTER**2
    chi2 = (gr[:, None] - gr_m[None, :]) ** 2 / v_gr + (ri[:, None] - ri_m[None, :]) ** 2 / v_ri
    # a normalised likelihood (relative to a galaxy measured without error): noisy colours
    # of faint sources spread their weight over many redshifts instead of matching all of them
    norm = RS_SCATTER**2 / np.sqrt(v_gr * v_ri)
    w = norm * np.exp(-0.5 * np.nan_to_num(chi2, nan=np.inf))
    in_mag = (mag_r[:, None] < ms[None, :] + FAINT_DMAG) & (
        mag_r[:, None] > ms[None, :] - BRIGHT_DMAG
    )
    return np.where(in_mag, w, 0.0), in_mag


def red_sequence_weights(src: Sources) -> np.ndarray:
    """``(n_src, n_z)`` red-sequence weight of each source at each redshift of :data:`Z_GRID`
    (the normalised colour likelihood of the module docstring, 0 outside the magnitude window)."""
    return _weights(src)[0]


def _rs_chi2(src: Sources, j: int) -> np.ndarray:
    """χ² of each source's colours against the red sequence at grid redshift index ``j``."""
    gr_m, ri_m, _ = red_sequence_model()
    gr, ri, egr, eri = src.colours()
    chi2 = (gr - gr_m[j]) ** 2 / (egr**2 + RS_SCATTER**2) + (ri - ri_m[j]) ** 2 / (
        eri**2 + RS_SCATTER**2
    )
    return np.nan_to_num(chi2, nan=np.inf)


def pick_bcg(src: Sources, z: float, cx: float, cy: float, reach: float) -> int:
    """Index of the brightest (i) red-sequence source within ``reach`` pixels of ``(cx, cy)``.

    Red sequence: colours within 3σ (photometric error and :data:`RS_SCATTER`) of the E
    template at the grid redshift nearest ``z`` in the PSF aperture or in the wide aperture,
    and not brighter than m*_r(z) − 4.5 (a star). Brightest: the largest i flux in the wide
    aperture (a PSF-sized aperture ranks an extended BCG below compact satellites). Returns −1
    when there is none (or ``z`` is NaN).
    """
    if len(src) == 0 or not np.isfinite(z):
        return -1
    j = int(np.argmin(np.abs(Z_GRID - z)))
    ms = red_sequence_model()[2]
    wide = src.wide()
    red = (_rs_chi2(src, j) <= 9.0) | (_rs_chi2(wide, j) <= 9.0)
    mag_r = src.mag[:, 1]
    cand = (
        (np.hypot(src.x - cx, src.y - cy) <= reach)
        & red
        & (np.nan_to_num(mag_r, nan=-np.inf) > ms[j] - BRIGHT_DMAG - 1.0)
    )
    if not cand.any():
        return -1
    return int(np.flatnonzero(cand)[int(np.nanargmax(wide.flux[cand, 2]))])


def kpc_per_pixel(z: float, pixel_arcsec: float) -> float:
    """Proper kpc per pixel of ``pixel_arcsec`` at redshift ``z``."""
    from clusterfw.sim.cosmology import angular_diameter_distance

    da_kpc = float(np.asarray(angular_diameter_distance(np.asarray(z, float)), float)) * 1000.0
    return da_kpc * pixel_arcsec / 206264.806


def pick_central(
    src: Sources,
    z: float,
    cx: float,
    cy: float,
    reach: float,
    sigma_pix: float,
    gamma: float = CENTRAL_GAMMA,
) -> int:
    """Index of the most probable central galaxy within ``reach`` pixels of ``(cx, cy)``.

    Candidates: red-sequence sources at ``z`` — colours within 3σ of the red sequence in the
    PSF aperture *or* in the wide aperture (an extended galaxy's seeing-corrected PSF-aperture
    colours can be off by more than the red sequence's width) — not brighter than
    m*_r(z) − 4.5 (a star). Score ``gamma · ln(L/L*) + ln(ρ + 0.05)``: ``L/L*`` from the
    wide-aperture r magnitude against m*_r(z), ``ρ`` the sum of the other sources'
    red-sequence weights at ``z`` (:func:`_weights`) times a Gaussian of ``sigma_pix`` of
    their distance (0.05: a floor so that an isolated galaxy is not ruled out). Returns −1
    when there is no candidate (or ``z`` is NaN).
    """
    if len(src) == 0 or not np.isfinite(z):
        return -1
    d0 = np.hypot(src.x - cx, src.y - cy)
    loc = d0 <= reach + 4.0 * sigma_pix
    s = src.subset(loc)
    j = int(np.argmin(np.abs(Z_GRID - z)))
    ms = red_sequence_model()[2]
    wide = s.wide()
    red = (_rs_chi2(s, j) <= 9.0) | (_rs_chi2(wide, j) <= 9.0)
    mag_r = s.mag[:, 1]
    cand = (
        (d0[loc] <= reach) & red & (np.nan_to_num(mag_r, nan=-np.inf) > ms[j] - BRIGHT_DMAG - 1.0)
    )
    if not cand.any():
        return -1
    ci = np.flatnonzero(cand)
    w = _weights(s)[0][:, j]
    g = np.exp(
        -0.5 * ((s.x[ci, None] - s.x[None]) ** 2 + (s.y[ci, None] - s.y[None]) ** 2) / sigma_pix**2
    )
    g[np.arange(ci.size), ci] = 0.0  # not itself
    rho = (g * w[None, :]).sum(axis=1)
    mag_lum = wide.mag[ci, 1]  # the wide aperture: an extended BCG's light
    mag_lum = np.where(np.isfinite(mag_lum), mag_lum, mag_r[ci])
    score = gamma * (-0.4 * np.log(10.0)) * (mag_lum - ms[j]) + np.log(rho + 0.05)
    best = int(ci[int(np.argmax(score))])
    return int(np.flatnonzero(loc)[best])


def box_photoz(
    src: Sources,
    box: tuple[float, float, float, float],
    image_shape: tuple[int, int],
    valid_fraction: float = 1.0,
    bcg_reach_pix: float | None = None,
    *,
    pixel_arcsec: float | None = None,
    centring: str = "central",
    search_kpc: float = CENTRAL_SEARCH_KPC,
    sigma_kpc: float = CENTRAL_SIGMA_KPC,
    gamma: float = CENTRAL_GAMMA,
    max_offset_kpc: float | None = CENTRAL_MAX_OFFSET_KPC,
) -> PhotoZ:
    """Red-sequence redshift of the sources in ``box`` = ``(x0, y0, x1, y1)`` (input pixels).

    Parameters
    ----------
    src : Sources
    box : tuple of float
    image_shape : tuple of int
    valid_fraction : float
        Fraction of the image with data (scales the background area).
    bcg_reach_pix : float, optional
        The central is searched within this many pixels of the box centre, at most (and
        within :data:`BCG_REACH` box sides).
    pixel_arcsec : float, optional
        Pixel scale; needed by ``centring="central"`` (proper kpc at the photo-z). Without it
        the ``brightest`` rule is used.
    centring : {"central", "brightest"}
        See the module docstring.
    search_kpc, sigma_kpc, gamma, max_offset_kpc : float
        Parameters of the central-galaxy rule (``max_offset_kpc=None``: no limit).
    """
    if centring not in ("central", "brightest"):
        raise ValueError(f"centring must be 'central' or 'brightest' (got {centring!r})")
    x0, y0, x1, y1 = box
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    nan = PhotoZ(float("nan"), float("nan"), 0.0, cx, cy, False)
    if len(src) == 0:
        return nan
    # the background comes from a square of BACKGROUND_SIDES box sides around the box (clipped
    # to the image): local, and cheap on a large tile
    side = max(x1 - x0, y1 - y0)
    h = 0.5 * BACKGROUND_SIDES * side
    bx0, bx1 = max(cx - h, -0.5), min(cx + h, image_shape[1] - 0.5)
    by0, by1 = max(cy - h, -0.5), min(cy + h, image_shape[0] - 0.5)
    local = (src.x >= bx0) & (src.x < bx1) & (src.y >= by0) & (src.y < by1)
    src = src.subset(local)
    if len(src) == 0:
        return nan
    w, _ = _weights(src)
    inside = (src.x >= x0) & (src.x < x1) & (src.y >= y0) & (src.y < y1)
    area_box = max((x1 - x0) * (y1 - y0), 1.0)
    area_bg = max((bx1 - bx0) * (by1 - by0) * valid_fraction - area_box, area_box)
    # members concentrate towards the centre: a Gaussian radial weight of σ = RADIAL × side,
    # and the background's expected weighted count (the same weight integrated over the box)
    sig = RADIAL * side
    u = np.exp(-0.5 * ((src.x - cx) ** 2 + (src.y - cy) ** 2) / sig**2)
    gx = np.linspace(x0, x1, 33)
    gy = np.linspace(y0, y1, 33)
    ug = np.exp(-0.5 * ((gx[None, :] - cx) ** 2 + (gy[:, None] - cy) ** 2) / sig**2)
    a_eff = float(ug.mean()) * area_box
    excess = (u[inside, None] * w[inside]).sum(axis=0) - w[~inside].sum(axis=0) * a_eff / area_bg
    sm = np.convolve(excess, np.ones(5) / 5, mode="same")
    k = int(np.argmax(sm))
    if not sm[k] > 1.0:
        return nan
    near = np.abs(Z_GRID - Z_GRID[k]) <= 0.1
    e = np.clip(excess[near], 0, None)
    zg = Z_GRID[near]
    zc = float((e * zg).sum() / e.sum())
    spread = float(np.sqrt((e * (zg - zc) ** 2).sum() / e.sum()))
    n_eff = float(sm[k])
    z_err = max(spread / np.sqrt(n_eff), 0.005 * (1 + zc))
    z_alt = second_peak(excess, sm, k)
    if np.isfinite(z_alt):
        z_err = max(z_err, abs(z_alt - zc))
    # the central galaxy near the box centre
    reach = BCG_REACH * max(x1 - x0, y1 - y0)
    if bcg_reach_pix is not None:
        reach = min(reach, float(bcg_reach_pix))
    max_off = np.inf
    if centring == "central" and pixel_arcsec is not None:
        kpp = kpc_per_pixel(zc, pixel_arcsec)
        reach = min(reach, search_kpc / kpp)
        if max_offset_kpc is not None:
            max_off = max_offset_kpc / kpp
        i = pick_central(src, zc, cx, cy, reach, sigma_kpc / kpp, gamma)
    else:
        i = pick_bcg(src, zc, cx, cy, reach)
    amb = bool(np.isfinite(z_alt))
    if i >= 0 and np.hypot(src.x[i] - cx, src.y[i] - cy) <= max_off:
        return PhotoZ(zc, z_err, n_eff, float(src.x[i]), float(src.y[i]), True, z_alt, amb)
    return PhotoZ(zc, z_err, n_eff, cx, cy, False, z_alt, amb)


def _centroid(excess: np.ndarray, k: int) -> float:
    """Excess-weighted mean redshift within ±0.1 of grid index ``k``."""
    near = np.abs(Z_GRID - Z_GRID[k]) <= 0.1
    e = np.clip(excess[near], 0, None)
    return float((e * Z_GRID[near]).sum() / e.sum())


def second_peak(excess: np.ndarray, smoothed: np.ndarray, k: int) -> float:
    """Redshift of a second red sequence (NaN when none; see the module docstring).

    The highest local maximum of ``smoothed`` more than :data:`SECOND_DZ` (1 + z) from grid
    index ``k`` that reaches :data:`AMBIGUOUS_RATIO` of ``smoothed[k]`` and :data:`SECOND_MIN`.
    """
    sm = np.asarray(smoothed, float)
    padded = np.concatenate([[-np.inf], sm, [-np.inf]])
    peaks = np.flatnonzero((padded[1:-1] > padded[:-2]) & (padded[1:-1] >= padded[2:]))
    far = np.abs(Z_GRID[peaks] - Z_GRID[k]) > SECOND_DZ * (1 + Z_GRID[k])
    ok = peaks[far & (sm[peaks] >= max(SECOND_MIN, AMBIGUOUS_RATIO * sm[k]))]
    if ok.size == 0:
        return float("nan")
    return _centroid(excess, int(ok[np.argmax(sm[ok])]))
