"""Regenerate the optical simulator's k-correction table from real templates and filter curves.

Run from the repository root (needs ``pip install galsim``, only for its shipped data files)::

    python -m clusterfw.sim.optical.make_tables

It writes ``clusterfw/sim/optical/data/kcorr_cww_lsst.npz`` with

``z``
    redshift grid, 0 ≤ z ≤ 2 in steps of 0.01;
``templates``
    ``E``, ``Sbc``, ``Scd``, ``Im``: the Coleman, Wu & Weedman (1980) galaxy spectra as extended
    by Bolzonella, Miralles & Pelló (2000) (``CWW_*_ext.sed`` shipped with GalSim);
``bands``
    ``u g r i z y``: the LSST total-throughput curves shipped with GalSim (airmass 1.2), which
    stand in for the SDSS and DECam filters of the same names;
``kcorr``
    ``(n_template, n_band, n_z)``: the cross-band k-correction ``K_{b r}(z)`` of Hogg et al.
    (2002, eq. 13) from rest-frame r to observed band b, so that ``m_b = M_r + DM(z) + K_{b r}(z)``
    with AB magnitudes and ``DM`` the distance modulus (luminosity distance).

The synthetic AB magnitude of an ``f_λ`` spectrum through a photon-counting bandpass ``R`` is
``-2.5 log10(∫ f_λ λ R dλ / ∫ (c/λ²) λ R dλ)`` (up to a constant that cancels in ``K``); a
source at redshift z has the observed spectrum ``f_λ(λ) ∝ L_λ(λ/(1+z)) / (1+z)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "data"
TEMPLATES = ("E", "Sbc", "Scd", "Im")
BANDS = ("u", "g", "r", "i", "z", "y")
Z_GRID = np.round(np.arange(0.0, 2.0 + 1e-9, 0.01), 6)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, comments="#")
    return data[:, 0], data[:, 1]


def _ab_mag(lam_sed: np.ndarray, flam: np.ndarray, lam_band: np.ndarray, thr: np.ndarray) -> float:
    """Synthetic AB magnitude (arbitrary zero point common to all calls) on the band's grid."""
    lam = np.linspace(lam_band[0], lam_band[-1], 4000)
    r = np.interp(lam, lam_band, thr)
    f = np.interp(lam, lam_sed, flam, left=0.0, right=0.0)
    num = np.trapezoid(f * lam * r, lam)
    den = np.trapezoid(lam**-1 * r, lam)
    return float(-2.5 * np.log10(num / den))


def make_kcorr_table(path: Path = HERE / "kcorr_cww_lsst.npz") -> Path:
    """Compute ``K_{b r}(z)`` for the CWW templates and LSST bands and save them."""
    import galsim

    share = Path(galsim.meta_data.share_dir)
    bands = {}
    for b in BANDS:
        lam_nm, thr = _read(share / "bandpasses" / f"LSST_{b}.dat")
        bands[b] = (lam_nm * 10.0, thr)  # Angstrom
    kcorr = np.empty((len(TEMPLATES), len(BANDS), Z_GRID.size))
    for it, t in enumerate(TEMPLATES):
        lam, flam = _read(share / "SEDs" / f"CWW_{t}_ext.sed")
        m_rest_r = _ab_mag(lam, flam, *bands["r"])
        for ib, b in enumerate(BANDS):
            for iz, z in enumerate(Z_GRID):
                m_obs = _ab_mag(lam * (1.0 + z), flam / (1.0 + z), *bands[b])
                kcorr[it, ib, iz] = m_obs - m_rest_r
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        z=Z_GRID,
        templates=np.array(TEMPLATES),
        bands=np.array(BANDS),
        kcorr=kcorr.astype(np.float32),
    )
    return path


if __name__ == "__main__":
    print(make_kcorr_table())
