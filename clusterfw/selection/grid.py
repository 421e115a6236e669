"""The (M500c, z) grid of a selection function, Wilson intervals, and cell bookkeeping."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from clusterfw.core.errors import ClusterfwError


@dataclass(frozen=True)
class MassRedshiftGrid:
    """Cells of a selection function: log-spaced M500c bins × linear redshift bins.

    Parameters
    ----------
    m_edges : numpy.ndarray
        M500c bin edges, Msun, increasing (at least two).
    z_edges : numpy.ndarray
        Redshift bin edges, increasing (at least two).
    """

    m_edges: np.ndarray
    z_edges: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_mass, n_z)``."""
        return len(self.m_edges) - 1, len(self.z_edges) - 1

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return self.shape[0] * self.shape[1]

    @property
    def m_centres(self) -> np.ndarray:
        """Geometric centres of the mass bins."""
        return np.sqrt(self.m_edges[1:] * self.m_edges[:-1])

    @property
    def z_centres(self) -> np.ndarray:
        """Centres of the redshift bins."""
        return 0.5 * (self.z_edges[1:] + self.z_edges[:-1])

    def cell_index(self, m500c: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Flat cell index (``i_m * n_z + i_z``) of each (M, z); -1 outside the grid."""
        m = np.asarray(m500c, dtype=float)
        zz = np.asarray(z, dtype=float)
        im = np.searchsorted(self.m_edges, m, side="right") - 1
        iz = np.searchsorted(self.z_edges, zz, side="right") - 1
        nm, nz = self.shape
        ok = (im >= 0) & (im < nm) & (iz >= 0) & (iz < nz)
        return np.where(ok, im * nz + iz, -1)

    def sample(self, cells: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw one (M500c, z) inside each given cell: log-uniform in M, uniform in z."""
        cells = np.asarray(cells, dtype=np.int64)
        nz = self.shape[1]
        im, iz = cells // nz, cells % nz
        lo, hi = np.log(self.m_edges[im]), np.log(self.m_edges[im + 1])
        m = np.exp(rng.uniform(lo, hi))
        z = rng.uniform(self.z_edges[iz], self.z_edges[iz + 1])
        return m, z

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready edges (for provenance)."""
        return {"m500c_edges": self.m_edges.tolist(), "z_edges": self.z_edges.tolist()}


def parse_axis(text: str, option: str, log: bool) -> np.ndarray:
    """Bin edges from ``LO:HI:N`` (N bins, log-spaced for mass) or ``E0,E1,...`` (edges).

    Raises
    ------
    clusterfw.core.errors.ClusterfwError
        ``<option>: ...`` on one line: an empty grid (no bin), non-numbers, non-increasing edges,
        or non-positive masses.
    """
    text = str(text).strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if n < 1:
                raise ClusterfwError(f"{option}: empty grid ({n} bins in {text!r})")
            if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
                raise ClusterfwError(f"{option}: empty grid (HI <= LO in {text!r})")
            if log and lo <= 0:
                raise ClusterfwError(f"{option}: masses must be > 0, got {text!r}")
            edges = np.geomspace(lo, hi, n + 1) if log else np.linspace(lo, hi, n + 1)
        else:
            edges = np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise ClusterfwError(
            f"{option}: {text!r} must look like LO:HI:N (N bins) or E0,E1,... (edges)"
        ) from None
    if edges.size < 2:
        raise ClusterfwError(f"{option}: empty grid (need at least two edges, got {text!r})")
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ClusterfwError(f"{option}: edges must be finite and increasing, got {text!r}")
    if log and edges[0] <= 0:
        raise ClusterfwError(f"{option}: masses must be > 0, got {text!r}")
    if not log and edges[0] < 0:
        raise ClusterfwError(f"{option}: redshifts must be >= 0, got {text!r}")
    return edges


def parse_grid(mass: str, redshift: str) -> MassRedshiftGrid:
    """The grid of ``--mass-grid`` and ``--z-grid`` (see :func:`parse_axis`)."""
    z_edges = parse_axis(redshift, "--z-grid", log=False)
    if z_edges[0] <= 0:
        raise ClusterfwError(f"--z-grid: redshifts must be > 0, got {redshift!r}")
    return MassRedshiftGrid(parse_axis(mass, "--mass-grid", log=True), z_edges)


def wilson_interval(
    k: np.ndarray, n: np.ndarray, confidence: float = 0.6827
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    k, n : array_like
        Successes and trials (``n = 0`` gives NaN estimate and the interval [0, 1]).
    confidence : float
        Two-sided coverage (default 1σ).

    Returns
    -------
    centre, lo, hi : numpy.ndarray
        The Wilson centre and interval bounds; the half-width ``(hi - lo) / 2`` is the error.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    zq = float(stats.norm.ppf(0.5 + confidence / 2.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        denom = 1.0 + zq**2 / np.maximum(n, 1e-300)
        centre = (p + zq**2 / (2 * np.maximum(n, 1e-300))) / denom
        half = (
            zq
            * np.sqrt(
                p * (1 - p) / np.maximum(n, 1e-300) + zq**2 / (4 * np.maximum(n, 1e-300) ** 2)
            )
            / denom
        )
    lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    centre = np.where(n > 0, centre, np.nan)
    return centre, lo, hi
