"""The sky area of a simulated universe, shared by every layer (each with its own pixels)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from astropy.wcs import WCS


@dataclass(frozen=True)
class Footprint:
    """A rectangular patch: centre, width and height (degrees), projection ``CAR`` or ``TAN``.

    Every layer grids it at its own pixel scale with the convention of
    :func:`clusterfw.sim.patch.patch_wcs`: reference point at the centre, north up, east left.
    """

    ra_deg: float = 60.0
    dec_deg: float = -45.0
    width_deg: float = 1.0
    height_deg: float = 1.0
    projection: str = "CAR"

    @classmethod
    def from_patch_config(cls, cfg: Any) -> Footprint:
        """The footprint of a :class:`clusterfw.sim.config.PatchConfig` (its exact pixel extent)."""
        ny, nx = cfg.shape
        return cls(
            float(cfg.ra_deg),
            float(cfg.dec_deg),
            nx * cfg.pixel_arcmin / 60.0,
            ny * cfg.pixel_arcmin / 60.0,
            str(cfg.projection),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)

    @property
    def area_deg2(self) -> float:
        """Nominal area (width × height) in deg²."""
        return self.width_deg * self.height_deg

    def shape(self, pixel_arcsec: float) -> tuple[int, int]:
        """``(ny, nx)`` at ``pixel_arcsec``."""
        nx = max(1, int(round(self.width_deg * 3600.0 / pixel_arcsec)))
        ny = max(1, int(round(self.height_deg * 3600.0 / pixel_arcsec)))
        return ny, nx

    def wcs(self, pixel_arcsec: float) -> tuple[WCS, tuple[int, int]]:
        """The celestial WCS and shape of the footprint gridded at ``pixel_arcsec``."""
        ny, nx = self.shape(pixel_arcsec)
        w = WCS(naxis=2)
        p = self.projection
        w.wcs.ctype = [f"RA---{p}", f"DEC--{p}"]
        w.wcs.crval = [self.ra_deg % 360.0, self.dec_deg]
        w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
        w.wcs.cdelt = [-pixel_arcsec / 3600.0, pixel_arcsec / 3600.0]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.radesys = "ICRS"
        w.wcs.set()
        return w, (ny, nx)


def world_to_pixel(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel coordinates of ``(ra, dec)`` (degrees)."""
    if np.size(ra) == 0:
        return np.zeros(0), np.zeros(0)
    x, y = wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
    return np.asarray(x, float), np.asarray(y, float)
