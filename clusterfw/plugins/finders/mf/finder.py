"""The ``mf`` finder: multi-frequency, multi-scale matched filter (Melin et al. 2006; SPT)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from clusterfw.core.errors import InputError, PluginError
from clusterfw.core.plugin_api import Finder, PluginOptions
from clusterfw.core.schema import flag_bit

if TYPE_CHECKING:  # the heavy modules (scipy, pyarrow) are imported when a tile is filtered
    import pyarrow as pa

    from clusterfw.plugins.finders.mf.filters import FilterResult, FilterSettings, MapPool

# flag bits are declared once, in catalog_schema/flags.json
FLAG_NEAR_EDGE = flag_bit("near_edge")
FLAG_NEAR_POINT_SOURCE = flag_bit("near_point_source")
FLAG_MASKED_PIXELS = flag_bit("masked_pixels")
FLAG_MERGED = flag_bit("merged")

BETA_SCALES = tuple(float(s) for s in np.arange(1, 13) * 0.25)
ARNAUD_SCALES = tuple(float(s) for s in np.round(np.geomspace(1.0, 10.0, 12), 3))


def scale_tag(scale: float) -> str:
    """Column-name tag of a scale: ``2.4 -> "2p4"``, ``0.25 -> "0p25"``."""
    text = f"{scale:.2f}".rstrip("0")
    if text.endswith("."):
        text += "0"
    return text.replace(".", "p")


def _native_pixel_arcmin(tile: Any) -> float | None:
    """Source resolution of the tile's maps when they were interpolated (HEALPix), else None."""
    native = getattr(tile, "native_pixel_arcmin", None)
    return None if native is None else float(native)


def _shipped_cmb_cl() -> tuple[np.ndarray, np.ndarray]:
    """``(ell, C_ell)`` (µK²) of the lensed CMB the simulator ships (camb, Planck 2018)."""
    try:
        ref = resources.files("clusterfw.sim").joinpath("data/cmb_lensed_planck18.npz")
        with resources.as_file(ref) as path:
            data = np.load(path, allow_pickle=False)
            return np.asarray(data["ell"], float), np.asarray(data["cl_tt"], float)
    except (ModuleNotFoundError, FileNotFoundError, KeyError) as err:
        raise PluginError(
            "mf: noise='model' needs a CMB spectrum; pass -o mf.cmb_spectrum=FILE "
            "(columns: ell, C_ell in µK²)"
        ) from err


def read_cmb_spectrum(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and check a C_ell table for ``noise=model``: columns ell, C_ell (µK²).

    Raises
    ------
    InputError
        Naming the file: unreadable, fewer than two columns or rows, a non-finite value, ell
        not increasing from ≥ 0, or a negative C_ell (a power spectrum is never negative).
    """
    from clusterfw.core.fits_io import check_regular_file, reading

    check_regular_file(path)
    try:
        with reading(path, held=[]):
            tab = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(str(path), f"unreadable C_ell table ({problem})") from None
    if tab.shape[0] < 2 or tab.shape[1] < 2:
        raise InputError(
            str(path), f"needs two columns (ell, C_ell in µK²) and two rows, got {tab.shape}"
        )
    ell, cl = tab[:, 0], tab[:, 1]
    bad = np.flatnonzero(~np.isfinite(ell) | ~np.isfinite(cl))
    if bad.size:
        raise InputError(str(path), f"non-finite value in row {bad[0] + 1}")
    if ell[0] < 0 or np.any(np.diff(ell) <= 0):
        raise InputError(str(path), "ell must start at >= 0 and increase from row to row")
    neg = np.flatnonzero(cl < 0)
    if neg.size:
        i = neg[0]
        raise InputError(
            str(path),
            f"negative C_ell ({cl[i]:g} at ell={ell[i]:g}, row {i + 1}): a power spectrum "
            "is never negative",
        )
    return ell, cl


def _dl_function(ell: np.ndarray, cl: np.ndarray):
    dl = ell * (ell + 1.0) / (2.0 * np.pi) * cl

    def cmb_dl(x: np.ndarray) -> np.ndarray:
        return np.interp(x, ell, dl, right=0.0)

    return cmb_dl


#: Radius enclosing 90 % of the truncated unit profile's integrated signal (units of the scale):
#: a scale is searched only if twice this fits inside a tile's apodisation plateau.
SIGNAL_RADIUS_90 = {"beta": 4.216, "arnaud": 2.068}


class MatchedFilterFinder(Finder):
    """Multi-frequency matched filter over a set of cluster profiles (DeepSZ §2.1).

    Bands are combined with the tSZ spectral law and their Gaussian beams; the noise
    covariance across bands is estimated from the tile (default) or modelled; bright point
    sources are found with a beam filter and subtracted (or inpainted) first. Candidates are
    groups of connected pixels above ``snr_min`` in the maximum-over-scales SNR map.
    """

    name: ClassVar[str] = "mf"
    version: ClassVar[str] = "1.0.0"
    score_kind: ClassVar[str] = "snr"
    margin_arcmin: ClassVar[float] = 20.0

    class Options(PluginOptions):
        """Options of the ``mf`` finder (``-o mf.KEY=VALUE``)."""

        profile: Literal["beta", "arnaud"] = Field(
            "beta", description="cluster profile: projected beta model (beta=1) or Arnaud GNFW"
        )
        scales_arcmin: list[float] | None = Field(
            None,
            description="core radii (beta) or theta500 (arnaud) in arcmin; default 0.25..3 in "
            "steps of 0.25 (beta) or 12 log-spaced values 1..10 (arnaud)",
        )
        ref_scale_arcmin: float = Field(
            1.0,
            gt=0,
            allow_inf_nan=False,
            description="scale of the fixed-scale columns mf_snr_<s>, mf_y_c_<s>",
        )
        snr_min: float = Field(
            4.0, gt=0, allow_inf_nan=False, description="detection threshold on the SNR"
        )
        noise: Literal["data", "model"] = Field(
            "data",
            description="noise covariance: estimated from the tile's apodised cross-spectra, "
            "or modelled (CMB + flat foregrounds + white noise from the bands' NOISE)",
        )
        cmb_spectrum: str | None = Field(
            None, description="for noise=model: text file with columns ell, C_ell (µK²)"
        )
        noise_iterations: int = Field(
            0,
            ge=0,
            le=5,
            description="experimental: re-measure the data covariance after subtracting "
            "detections above noise_mask_snr (removes the clusters' own signal)",
        )
        noise_mask_snr: float = Field(
            5.0, gt=0, allow_inf_nan=False, description="SNR of detections subtracted"
        )
        apod_arcmin: float = Field(
            10.0,
            ge=0,
            allow_inf_nan=False,
            description="apodisation taper width; nothing is detected inside the taper (keep it "
            "below the tile margin)",
        )
        point_sources: Literal["subtract", "inpaint", "none"] = Field(
            "subtract", description="treatment of detected point sources"
        )
        ps_snr_min: float = Field(
            5.0, gt=0, allow_inf_nan=False, description="point-source detection threshold"
        )
        ps_flag_radius_arcmin: float = Field(
            3.0,
            ge=0,
            allow_inf_nan=False,
            description="flag candidates this close to a detected point source",
        )
        merge_radius_arcmin: float = Field(
            1.5, ge=0, allow_inf_nan=False, description="merge groups closer than this"
        )
        position: Literal["centroid", "peak"] = Field(
            "peak",
            description="sub-pixel peak of the best-scale map, or the SNR-weighted "
            "group centroid of the paper (noisier for large groups)",
        )
        edge_flag_arcmin: float = Field(
            8.0,
            ge=0,
            allow_inf_nan=False,
            description="flag candidates this close to the apodisation taper (tile edge or mask)",
        )
        mask_flag_radius_arcmin: float = Field(
            3.0,
            ge=0,
            allow_inf_nan=False,
            description="flag candidates with masked pixels this close",
        )
        snr_calibration: Literal["measured", "filter"] = Field(
            "measured",
            description="SNR unit: the filtered map's measured (5σ-clipped) interior RMS, or "
            "the filter's own σ (the ratio of the two is kept in mf_snr_rms)",
        )
        workers: int = Field(-1, description="FFT threads (-1: all cores)")

        @field_validator("scales_arcmin")
        @classmethod
        def _positive(cls, v: list[float] | None) -> list[float] | None:
            if v is not None and (len(v) == 0 or not all(0 < s < float("inf") for s in v)):
                raise ValueError(
                    "scales_arcmin must be a non-empty list of positive, finite numbers"
                )
            return v

    options: Options

    def __init__(self, options=None) -> None:
        super().__init__(options)
        # (maps array, key, result): the maps are held so their id cannot be reused meanwhile
        self._cache: tuple[np.ndarray, tuple, FilterResult] | None = None
        self._pool: MapPool | None = None  # result maps reused from tile to tile
        # default scales are limited to those that fit the current tile (None: no limit)
        self._scale_limit: float | None = None
        self._warned_scale_limit = False
        self._cmb_cl: tuple[np.ndarray, np.ndarray] | None = None
        if self.options.noise == "model":  # checked before any tile is read
            o = self.options
            self._cmb_cl = (
                read_cmb_spectrum(Path(o.cmb_spectrum)) if o.cmb_spectrum else _shipped_cmb_cl()
            )

    # ------------------------------------------------------------------ helpers
    @property
    def scales(self) -> tuple[float, ...]:
        """The search scales in arcmin."""
        o = self.options
        if o.scales_arcmin is not None:
            return tuple(float(s) for s in o.scales_arcmin)
        default = BETA_SCALES if o.profile == "beta" else ARNAUD_SCALES
        if self._scale_limit is None:
            return default
        return tuple(s for s in default if s <= self._scale_limit)

    def _settings(self) -> FilterSettings:
        from clusterfw.plugins.finders.mf.filters import FilterSettings

        o = self.options
        cmb = None if self._cmb_cl is None else _dl_function(*self._cmb_cl)
        return FilterSettings(
            profile=o.profile,
            scales_arcmin=self.scales,
            ref_scale_arcmin=o.ref_scale_arcmin,
            noise=o.noise,
            cmb_dl=cmb,
            apod_arcmin=o.apod_arcmin,
            point_sources=o.point_sources,
            ps_snr_min=o.ps_snr_min,
            noise_iterations=o.noise_iterations,
            noise_mask_snr=o.noise_mask_snr,
            snr_calibration=o.snr_calibration,
            workers=o.workers,
        )

    def _check(self, tile) -> None:
        maps = np.asarray(tile.maps)
        if maps.ndim != 3 or maps.shape[0] < 1 or len(tile.bands) != maps.shape[0]:
            raise PluginError(f"mf: tile {tile.tile_id} needs maps of shape (n_band>=1, ny, nx)")
        if min(maps.shape[1:]) < 8:
            raise PluginError(f"mf: tile {tile.tile_id} is too small ({maps.shape[1:]} pixels)")
        for b in tile.bands:
            if b.beam_fwhm_arcmin is None or not b.beam_fwhm_arcmin > 0:
                raise PluginError(f"mf: band {b.name!r} has no beam FWHM (set BEAMFWHM)")
            if b.freq_ghz is None or not b.freq_ghz > 0:
                raise PluginError(f"mf: band {b.name!r} has no frequency (set FREQ)")
            if self.options.noise == "model" and not (b.noise_uk_arcmin or 0) > 0:
                raise PluginError(
                    f"mf: noise=model needs the white-noise depth of band {b.name!r} (set NOISE)"
                )
        self._check_scales_fit(tile)

    def _check_scales_fit(self, tile) -> None:
        """Refuse scales whose profile does not fit inside the tile's apodisation plateau.

        A profile's signal must lie where the map is unweighted by the taper; otherwise its
        SNR (filter σ and measured RMS alike) is meaningless: on 80' tiles, a 12' β scale gave
        a measured/filter RMS ratio of 0.44 instead of ~0.7 and inflated SNRs.
        """
        o = self.options
        plateau = min(tile.maps.shape[1:]) * tile.pixel_scale_arcmin - 2.0 * o.apod_arcmin
        fits = plateau / (2.0 * SIGNAL_RADIUS_90[o.profile])
        self._scale_limit = None
        if o.scales_arcmin is None and fits < max(self.scales) and fits >= min(self.scales):
            # default scales: search those that fit this tile (scales given by the user are
            # searched as given, or refused below)
            self._scale_limit = fits
            if not self._warned_scale_limit:
                self._warned_scale_limit = True
                warnings.warn(
                    f"mf: default scales above {fits:.3g}' do not fit tile {tile.tile_id} "
                    f"({max(plateau, 0.0):.4g}' inside its {o.apod_arcmin:g}' taper); searching "
                    f"{len(self.scales)} scales up to {max(self.scales):g}' (set "
                    "mf.scales_arcmin or a larger --tile-size)",
                    stacklevel=2,
                )
            return
        largest = max(self.scales)
        need = 2.0 * SIGNAL_RADIUS_90[o.profile] * largest
        if need > plateau:
            which = (
                "mf.scales_arcmin"
                if o.scales_arcmin is not None
                else f"mf.scales_arcmin (default of profile={o.profile})"
            )
            raise PluginError(
                f"{which}: scale {largest:g}' does not fit in tile {tile.tile_id} (90% of a "
                f"{o.profile} profile's signal lies within {need:.4g}', the tile has "
                f"{max(plateau, 0.0):.4g}' inside its {o.apod_arcmin:g}' taper); use scales "
                f"<= {max(fits, 0.0):.3g}' or a larger --tile-size"
            )

    @staticmethod
    def blank_band(tile) -> str | None:
        """Name of a band with no finite pixel, or a constant one, in ``tile``; else None.

        Such a tile (a masked or zero-filled region of a larger map) has nothing to filter:
        it gives no candidates and NaN forced scores.
        """
        maps = np.asarray(tile.maps)
        for band, m in zip(tile.bands, maps, strict=True):
            lo, hi = np.min(m), np.max(m)  # NaN as soon as one pixel is NaN
            if not (np.isfinite(lo) and np.isfinite(hi)):
                finite = np.isfinite(m)
                if not finite.any():
                    return band.name
                lo = np.min(m, where=finite, initial=np.inf)
                hi = np.max(m, where=finite, initial=-np.inf)
            if lo == hi:
                return band.name
        return None

    def filter_tile(self, tile) -> FilterResult:
        """Filter ``tile`` at every scale (cached for the most recent tile).

        Returns
        -------
        FilterResult
            SNR maps per scale, their σ(y_c), measured RMS, point sources, window.
        """
        from clusterfw.plugins.finders.mf.filters import MapPool, run_filter

        self._check(tile)
        native = _native_pixel_arcmin(tile)
        key = (
            native,
            tile.tile_id,
            tile.maps.shape,
            str(tile.maps.dtype),
            round(float(tile.pixel_scale_arcmin), 12),
            tuple(tile.bands),
            self.options.model_dump_json(),
        )
        # the cached result is this tile's only if its maps are the very array filtered then:
        # the cache holds that array, so no other array can have its id meanwhile
        if self._cache is not None and self._cache[0] is tile.maps and self._cache[1] == key:
            return self._cache[2]
        maps = np.asarray(tile.maps, dtype=np.float32)
        bands = tile.bands
        if self._pool is None:
            self._pool = MapPool(limit=len(self.scales) + 2)
        self._cache = None  # let the previous tile's maps be reused, unless held elsewhere
        try:
            res = run_filter(
                maps,
                tile.pixel_scale_arcmin,
                [b.freq_ghz for b in bands],
                [b.beam_fwhm_arcmin for b in bands],
                [b.noise_uk_arcmin for b in bands],
                replace(self._settings(), native_pixel_arcmin=native),
                pool=self._pool,
            )
        except (ValueError, np.linalg.LinAlgError) as err:
            raise PluginError(f"mf: cannot filter tile {tile.tile_id}: {err}") from err
        self._cache = (tile.maps, key, res)
        return res

    # ------------------------------------------------------------------ API
    def find(self, tile) -> pa.Table:
        """Candidates in ``tile``'s core (see the class docstring and docs/finders/mf.md)."""
        import pyarrow as pa
        from scipy import ndimage

        from clusterfw.core.schema import candidate_table, empty_candidates, plugin_field
        from clusterfw.plugins.finders.mf.peaks import find_peaks, merge_peaks

        o = self.options
        if self.blank_band(tile) is not None:
            self._check(tile)
            return empty_candidates(self.name, self.score_kind)
        res = self.filter_tile(tile)
        # a finite maximum means every value is finite (a NaN would make it NaN): one reduction
        if not (np.isfinite(res.max_snr.max()) or np.isfinite(res.max_snr).any()):
            return empty_candidates(self.name, self.score_kind)
        pix = tile.pixel_scale_arcmin
        peaks = find_peaks(res.snr, res.max_snr, o.snr_min, res.detectable, o.position)
        peaks = merge_peaks(peaks, o.merge_radius_arcmin / pix)
        ra, dec = tile.pixel_to_world(peaks.x, peaks.y)
        keep = np.asarray(tile.in_core(ra, dec), dtype=bool)
        peaks = peaks.take(keep)
        ra, dec = ra[keep], dec[keep]
        scales = np.asarray(self.scales)
        si = peaks.scale_index
        snr = peaks.snr
        y_c = snr * res.sigma_y[si]
        pos_err = np.sqrt(2.0 / res.kvar[si]) / np.maximum(snr, 1e-3)
        coords = np.vstack([peaks.y, peaks.x])
        snr_ref = ndimage.map_coordinates(res.snr_ref, coords, order=1, mode="nearest")
        flags, ps_dist = self._flags(tile, res, peaks)
        tag = scale_tag(o.ref_scale_arcmin)
        extra = {
            f"mf_snr_{tag}": (
                plugin_field(
                    f"mf_snr_{tag}",
                    pa.float32(),
                    "",
                    f"SNR at the fixed reference scale {o.ref_scale_arcmin} arcmin",
                    "stat.snr",
                ),
                snr_ref.astype(np.float32),
            ),
            f"mf_y_c_{tag}": (
                plugin_field(
                    f"mf_y_c_{tag}",
                    pa.float32(),
                    "",
                    f"central Compton y at the fixed reference scale {o.ref_scale_arcmin} arcmin",
                    "phys.sz",
                ),
                (snr_ref * res.sigma_y_ref).astype(np.float32),
            ),
            "mf_npix": (
                plugin_field("mf_npix", pa.int32(), "pix", "pixels in the detection group"),
                peaks.npix.astype(np.int32),
            ),
            "mf_snr_rms": (
                plugin_field(
                    "mf_snr_rms",
                    pa.float32(),
                    "",
                    "measured RMS of the best-scale map in units of the filter's own sigma "
                    "(calibration check, ideally 1)",
                ),
                res.rms[si].astype(np.float32),
            ),
            "mf_ps_dist": (
                plugin_field(
                    "mf_ps_dist",
                    pa.float32(),
                    "arcmin",
                    "distance to the nearest detected point source (NaN if none)",
                ),
                ps_dist.astype(np.float32),
            ),
        }
        return candidate_table(
            finder=self.name,
            score_kind=self.score_kind,
            ra=ra,
            dec=dec,
            score=snr,
            tile_id=tile.tile_id,
            optional={
                "snr": snr.astype(np.float32),
                "filter_scale": scales[si].astype(np.float32),
                "y_c": y_c.astype(np.float32),
                "y_c_err": res.sigma_y[si].astype(np.float32),
                "pos_err": pos_err.astype(np.float32),
                "flags": flags,
            },
            extra=extra,
        )

    def _flags(self, tile, res: FilterResult, peaks) -> tuple[np.ndarray, np.ndarray]:
        from scipy import ndimage

        o = self.options
        pix = tile.pixel_scale_arcmin
        ny, nx = res.window.shape
        flags = np.zeros(len(peaks), dtype=np.uint32)
        if not len(peaks):
            return flags, np.zeros(0)
        edge = np.minimum.reduce([peaks.x, peaks.y, nx - 1 - peaks.x, ny - 1 - peaks.y])
        if res.dist_mask is not None:
            edge = np.minimum(edge, res.dist_mask[peaks.py, peaks.px])
            valid = np.all(np.isfinite(tile.maps), axis=0)
            dnan = ndimage.distance_transform_edt(valid)
            flags[dnan[peaks.py, peaks.px] * pix < o.mask_flag_radius_arcmin] |= FLAG_MASKED_PIXELS
        flags[edge * pix - o.apod_arcmin < o.edge_flag_arcmin] |= FLAG_NEAR_EDGE
        src = res.sources
        ps_dist = np.full(len(peaks), np.nan)
        if len(src):
            from scipy.spatial import cKDTree

            d, _ = cKDTree(np.column_stack([src.x, src.y])).query(
                np.column_stack([peaks.x, peaks.y])
            )
            ps_dist = np.asarray(d, dtype=np.float64) * pix
            flags[ps_dist < o.ps_flag_radius_arcmin] |= FLAG_NEAR_POINT_SOURCE
        flags[peaks.merged] |= FLAG_MERGED
        return flags, ps_dist

    def score_at(self, tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """SNR (maximum over scales) at arbitrary positions; NaN outside the window's plateau."""
        from scipy import ndimage

        from clusterfw.plugins.finders.mf.filters import PLATEAU

        if self.blank_band(tile) is not None:
            self._check(tile)
            return np.full(np.shape(np.atleast_1d(ra)), np.nan)
        res = self.filter_tile(tile)
        x, y = tile.world_to_pixel(np.atleast_1d(ra), np.atleast_1d(dec))
        ny, nx = res.max_snr.shape
        inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
        out = np.full(np.shape(x), np.nan)
        if inside.any():
            vals = ndimage.map_coordinates(
                res.max_snr, np.vstack([y[inside], x[inside]]), order=1, mode="nearest"
            )
            w = ndimage.map_coordinates(
                res.window, np.vstack([y[inside], x[inside]]), order=1, mode="nearest"
            )
            out[inside] = np.where(w >= PLATEAU, vals, np.nan)
        return out
