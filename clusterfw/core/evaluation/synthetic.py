"""Synthetic truth catalogues and toy finders, for testing metrics and combiners without maps.

A :class:`ToyFinder` sees a flat square patch through its own *score field*: unit-variance
smoothed Gaussian noise (its own seed) plus, for every halo, a Gaussian bump of height
``response(mass, z)`` times a log-normal scatter. Its detections are the local maxima of the field
above ``floor`` (score = field value, an SNR-like number), and :meth:`ToyFinder.score_at` reads the
field at any position (bilinear), so forced scores are consistent with detection scores. Two toy
finders with different redshift responses find partly different clusters, as the MF and the CNN
of DeepSZ do; a finder with zero response is a pure-noise ("random score") finder.

Nothing here is used by the pipeline; it exists for tests, docs and benchmarks of the evaluation
and combining code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

Response = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PatchGeometry:
    """A flat square patch: ``ra0``/``dec0`` its lower-left corner (deg), side in deg, pixel size.

    RA offsets are scaled by ``cos(dec0 + size/2)``; keep patches near the equator and a few
    degrees across for this to be accurate.
    """

    ra0: float = 10.0
    dec0: float = -1.0
    size_deg: float = 2.0
    pix_arcmin: float = 0.5

    @property
    def npix(self) -> int:
        """Pixels per side."""
        return int(round(self.size_deg * 60.0 / self.pix_arcmin))

    @property
    def cos_dec(self) -> float:
        """Cosine of the central declination."""
        return float(np.cos(np.deg2rad(self.dec0 + self.size_deg / 2)))

    def to_pix(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional pixel coordinates (x along RA, y along Dec; pixel centres at integers)."""
        dra = (np.asarray(ra, dtype=np.float64) - self.ra0 + 180.0) % 360.0 - 180.0
        x = dra * self.cos_dec * 60.0 / self.pix_arcmin - 0.5
        y = (np.asarray(dec, dtype=np.float64) - self.dec0) * 60.0 / self.pix_arcmin - 0.5
        return x, y

    def to_sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_pix`."""
        ra = self.ra0 + (np.asarray(x) + 0.5) * self.pix_arcmin / 60.0 / self.cos_dec
        dec = self.dec0 + (np.asarray(y) + 0.5) * self.pix_arcmin / 60.0
        return ra % 360.0, dec

    def bounds(self) -> tuple[float, float, float, float]:
        """``(ra_min, ra_max, dec_min, dec_max)``."""
        return (
            self.ra0,
            self.ra0 + self.size_deg / self.cos_dec,
            self.dec0,
            self.dec0 + self.size_deg,
        )


def synthetic_truth(
    geometry: PatchGeometry,
    seed: int,
    density_per_deg2: float = 400.0,
    m_min: float = 5e13,
    m_max: float = 2e15,
    slope: float = 2.5,
    z_range: tuple[float, float] = (0.05, 1.5),
) -> dict[str, np.ndarray]:
    """Random halos: uniform positions, ``dN/dM ~ M^-slope``, uniform redshift.

    Returns
    -------
    dict
        ``ra``, ``dec`` (deg), ``z``, ``mvir`` (Msun), ``halo_id``.
    """
    rng = np.random.default_rng(seed)
    n = rng.poisson(density_per_deg2 * geometry.size_deg**2)
    a = 1.0 - slope
    u = rng.random(n)
    m = (m_min**a + u * (m_max**a - m_min**a)) ** (1.0 / a)
    x = rng.random(n) * geometry.npix - 0.5
    y = rng.random(n) * geometry.npix - 0.5
    ra, dec = geometry.to_sky(x, y)
    z = rng.uniform(*z_range, n)
    return {"ra": ra, "dec": dec, "z": z, "mvir": m, "halo_id": np.arange(n, dtype=np.int64)}


def mf_like_response(m: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Toy response rising with redshift (an MF-like finder): 5 at 2e14 Msun, z = 0.5."""
    return 5.0 * (m / 2e14) ** 1.4 * ((1 + z) / 1.5) ** 0.8


def cnn_like_response(m: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Toy response falling with redshift (a CNN-like finder): 5 at 2e14 Msun, z = 0.5."""
    return 5.0 * (m / 2e14) ** 1.4 * ((1 + z) / 1.5) ** -1.2


def no_response(m: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Zero response: a finder whose scores are pure noise."""
    return np.zeros(np.shape(m))


class ToyFinder:
    """A toy finder on a :class:`PatchGeometry` (see the module docstring).

    Parameters
    ----------
    name : str
    geometry : PatchGeometry
    truth : dict
        From :func:`synthetic_truth`.
    response : callable
        ``response(mvir, z)`` -> peak height of a halo's bump (in noise units).
    seed : int
        Seeds the noise field and the scatter.
    scatter : float
        Log-normal scatter (natural log) of the response.
    beam_arcmin : float
        Gaussian sigma of the noise correlation and of the halo bumps.
    floor : float
        Detection threshold of :meth:`find`.
    """

    score_kind = "snr"

    def __init__(
        self,
        name: str,
        geometry: PatchGeometry,
        truth: dict[str, np.ndarray],
        response: Response,
        seed: int,
        scatter: float = 0.25,
        beam_arcmin: float = 1.0,
        floor: float = 3.0,
    ) -> None:
        from scipy.ndimage import gaussian_filter

        self.name = name
        self.geometry = geometry
        self.floor = floor
        rng = np.random.default_rng(seed)
        n = geometry.npix
        sig_pix = beam_arcmin / geometry.pix_arcmin
        noise = gaussian_filter(rng.standard_normal((n, n)), sig_pix, mode="wrap")
        noise /= noise.std()
        amp = response(truth["mvir"], truth["z"]) * np.exp(
            scatter * rng.standard_normal(truth["mvir"].size)
        )
        x, y = geometry.to_pix(truth["ra"], truth["dec"])
        signal = np.zeros((n, n))
        half = int(np.ceil(4 * sig_pix))
        for xi, yi, a in zip(x, y, amp, strict=True):
            if a < 0.05:
                continue
            cx, cy = int(round(xi)), int(round(yi))
            x0, x1 = max(cx - half, 0), min(cx + half + 1, n)
            y0, y1 = max(cy - half, 0), min(cy + half + 1, n)
            if x0 >= x1 or y0 >= y1:
                continue
            gx = np.arange(x0, x1) - xi
            gy = np.arange(y0, y1) - yi
            signal[y0:y1, x0:x1] += a * np.exp(
                -(gy[:, None] ** 2 + gx[None, :] ** 2) / (2 * sig_pix**2)
            )
        self.field = noise + signal

    def find(self, bounds: tuple[float, float, float, float] | None = None) -> pa.Table:
        """Local maxima (5x5 pixels) above ``floor``, optionally only inside ``bounds``.

        Returns
        -------
        pyarrow.Table
            A schema-conforming candidate table (``score_kind`` ``snr``).
        """
        from scipy.ndimage import maximum_filter

        from clusterfw.core.schema import candidate_table

        f = self.field
        peaks = (f == maximum_filter(f, size=5, mode="nearest")) & (f >= self.floor)
        y, x = np.nonzero(peaks)
        ra, dec = self.geometry.to_sky(x.astype(float), y.astype(float))
        score = f[y, x]
        if bounds is not None:
            r0, r1, d0, d1 = bounds
            keep = (ra >= r0) & (ra < r1) & (dec >= d0) & (dec < d1)
            ra, dec, score, x, y = ra[keep], dec[keep], score[keep], x[keep], y[keep]
        ids = np.array([f"{self.name}-x{i}-y{j}" for i, j in zip(x, y, strict=True)], dtype=object)
        return candidate_table(
            finder=self.name,
            score_kind=self.score_kind,
            ra=ra,
            dec=dec,
            score=score,
            candidate_id=ids,
            optional={"snr": score},
        )

    def score_at(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """The field at arbitrary positions (bilinear; NaN outside the patch)."""
        from scipy.ndimage import map_coordinates

        x, y = self.geometry.to_pix(ra, dec)
        x, y = np.atleast_1d(x), np.atleast_1d(y)
        n = self.geometry.npix
        inside = (x >= -0.5) & (x <= n - 0.5) & (y >= -0.5) & (y <= n - 0.5)
        out = map_coordinates(
            self.field, [np.clip(y, 0, n - 1), np.clip(x, 0, n - 1)], order=1, mode="nearest"
        )
        return np.where(inside, out, np.nan)


def forced_scorer(
    finders: dict[str, ToyFinder],
) -> Callable[[str, np.ndarray, np.ndarray], np.ndarray]:
    """A ``ForcedScorer`` over toy finders."""

    def forced(name: str, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        return finders[name].score_at(ra, dec)

    return forced
