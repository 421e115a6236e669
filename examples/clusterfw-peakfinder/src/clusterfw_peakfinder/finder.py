"""A beam-smoothed single-band peak finder (example plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from pydantic import Field

from clusterfw.core.plugin_api import Finder, PluginOptions
from clusterfw.core.schema import candidate_table, plugin_field

if TYPE_CHECKING:
    from clusterfw.core.sky import Tile

FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))


class PeakOptions(PluginOptions):
    """Options of the ``peak`` finder."""

    band: str | None = Field(None, description="Band to search (default: the first band)")
    smooth_arcmin: float = Field(1.0, gt=0, description="FWHM of the Gaussian smoothing, arcmin")
    threshold: float = Field(5.0, gt=0, description="Detection threshold in noise sigmas")
    sign: int = Field(-1, description="-1 finds decrements (tSZ below 217 GHz), +1 increments")
    min_pixels: int = Field(2, ge=1, description="Smallest connected group kept")


class PeakFinder(Finder):
    """Smooth, threshold in units of the robust noise, group connected pixels."""

    name = "peak"
    version = "0.1.0"
    score_kind = "snr"
    margin_arcmin = 5.0
    Options = PeakOptions

    def _snr_map(self, tile: Tile) -> np.ndarray:
        from scipy import ndimage  # imported on use: discovery stays fast

        opts = self.options
        band = tile.band_index(opts.band) if opts.band else 0
        image = tile.maps[band].astype(np.float64)
        valid = np.isfinite(image)
        sigma_pix = opts.smooth_arcmin * FWHM_TO_SIGMA / tile.pixel_scale_arcmin
        # Normalised convolution: masked pixels neither contribute nor bias the smoothing.
        num = ndimage.gaussian_filter(np.where(valid, image, 0.0), sigma_pix)
        den = ndimage.gaussian_filter(valid.astype(np.float64), sigma_pix)
        smooth = np.where(den > 0.5, num / np.maximum(den, 1e-12), np.nan)
        finite = smooth[np.isfinite(smooth)]
        median = np.median(finite)
        noise = 1.4826 * np.median(np.abs(finite - median))
        return opts.sign * (smooth - median) / noise

    def find(self, tile: Tile) -> pa.Table:
        """Candidates at SNR-weighted centroids of connected groups above threshold."""
        from scipy import ndimage

        snr = self._snr_map(tile)
        above = np.nan_to_num(snr, nan=0.0) > self.options.threshold
        labels, n = ndimage.label(above)
        index = np.arange(1, n + 1)
        sizes = ndimage.sum_labels(above, labels, index)
        weights = np.where(above, snr, 0.0)
        centroids = ndimage.center_of_mass(weights, labels, index)
        peaks = ndimage.maximum(weights, labels, index)
        keep = np.asarray(sizes) >= self.options.min_pixels
        yx = np.array(centroids, dtype=float).reshape(-1, 2)[keep]
        ra, dec = tile.pixel_to_world(yx[:, 1], yx[:, 0])
        core = tile.in_core(ra, dec)
        npix = np.asarray(sizes)[keep][core]
        # score = SNR at the reported position (what score_at gives there); the group's
        # highest SNR goes into its own column
        iy, ix = self._nearest_pixel(snr, yx[core, 1], yx[core, 0])
        score = snr[iy, ix]
        return candidate_table(
            finder=self.name,
            score_kind=self.score_kind,
            ra=ra[core],
            dec=dec[core],
            score=score,
            tile_id=tile.tile_id,
            optional={"snr": score},
            extra={
                "peak_npix": (
                    plugin_field(
                        "peak_npix", pa.int32(), "", "Pixels in the group above threshold"
                    ),
                    npix,
                ),
                "peak_max_snr": (
                    plugin_field("peak_max_snr", pa.float32(), "", "Highest SNR in the group"),
                    np.asarray(peaks)[keep][core],
                ),
            },
        )

    @staticmethod
    def _nearest_pixel(
        snr: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        iy = np.clip(np.round(y).astype(int), 0, snr.shape[0] - 1)
        ix = np.clip(np.round(x).astype(int), 0, snr.shape[1] - 1)
        return iy, ix

    def score_at(self, tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """SNR of the smoothed map at the given positions (nearest pixel)."""
        snr = self._snr_map(tile)
        x, y = tile.world_to_pixel(ra, dec)
        iy, ix = self._nearest_pixel(snr, x, y)
        return snr[iy, ix]
