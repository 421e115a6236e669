"""Regenerate the tables the simulator ships, so that run time needs neither camb nor colossus.

Run from the repository root (needs the ``sim`` extra: ``pip install -e '.[sim]'``)::

    python -m clusterfw.sim.data.make_tables

It writes, next to this file:

``cmb_lensed_planck18.npz``
    ``ell`` (0..10000) and ``cl_tt`` (lensed TT, µK², *not* multiplied by ℓ(ℓ+1)/2π) from camb
    for the Planck 2018 TT,TE,EE+lowE+lensing+BAO ΛCDM parameters, plus ``cl_tt_unlensed``.
``halo_abundance_planck18.npz``
    ``log10_m500c`` (Msun, no h), ``z`` and ``dn_dlog10m_dz_dsr`` = d³N / (dlog10 M500c dz dΩ)
    (halos per steradian) from the Tinker et al. (2008) mass function in colossus (500c, Eisenstein
    & Hu 1998 transfer function, σ8-normalised), plus the linear growth factor ``growth`` (D(z),
    D(0)=1) on the same redshift grid.

Both are plain ``.npz`` (no pickles) and are read with ``numpy.load(..., allow_pickle=False)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# Planck 2018 (TT,TE,EE+lowE+lensing+BAO), Table 2 last column; one neutrino of 0.06 eV.
CAMB_PARAMS = dict(
    H0=67.66, ombh2=0.02242, omch2=0.11933, mnu=0.06, omk=0.0, tau=0.0561, As=2.105e-9, ns=0.9665
)
LMAX_SHIP = 10000


def make_cmb_table(path: Path = HERE / "cmb_lensed_planck18.npz") -> Path:
    """Compute the lensed TT spectrum with camb and save it (µK², ℓ = 0..10000)."""
    import camb

    pars = camb.set_params(
        H0=CAMB_PARAMS["H0"],
        ombh2=CAMB_PARAMS["ombh2"],
        omch2=CAMB_PARAMS["omch2"],
        mnu=CAMB_PARAMS["mnu"],
        omk=CAMB_PARAMS["omk"],
        tau=CAMB_PARAMS["tau"],
        As=CAMB_PARAMS["As"],
        ns=CAMB_PARAMS["ns"],
        lmax=LMAX_SHIP + 2000,
        lens_potential_accuracy=4,
    )
    results = camb.get_results(pars)
    cls = results.get_cmb_power_spectra(pars, CMB_unit="muK", raw_cl=True, lmax=LMAX_SHIP)
    ell = np.arange(LMAX_SHIP + 1)
    np.savez_compressed(
        path,
        ell=ell,
        cl_tt=cls["lensed_scalar"][: LMAX_SHIP + 1, 0].astype(np.float64),
        cl_tt_unlensed=cls["unlensed_scalar"][: LMAX_SHIP + 1, 0].astype(np.float64),
        camb_version=np.array(camb.__version__),
        params=np.array(repr(CAMB_PARAMS)),
    )
    return path


def make_halo_table(path: Path = HERE / "halo_abundance_planck18.npz") -> Path:
    """Tabulate the Tinker08 M500c abundance per unit log10 mass, redshift and solid angle."""
    from colossus.cosmology import cosmology
    from colossus.lss import mass_function

    cosmo = cosmology.setCosmology("planck18")
    h = cosmo.H0 / 100.0
    log10_m = np.round(np.arange(12.9, 16.3001, 0.02), 4)
    z = np.round(np.arange(0.0, 3.0001, 0.02), 4)
    z_eval = np.maximum(z, 1e-4)
    table = np.zeros((log10_m.size, z.size))
    c_kms = 299792.458
    for j, zz in enumerate(z_eval):
        # colossus works in Msun/h and (Mpc/h)^-3
        dndlnm = mass_function.massFunction(
            10**log10_m * h, zz, mdef="500c", model="tinker08", q_out="dndlnM"
        )
        chi = cosmo.comovingDistance(z_max=zz)  # Mpc/h
        dv_dz_dsr = c_kms / (cosmo.Hz(zz) / h) * chi**2  # (Mpc/h)^3 per unit z per sr
        table[:, j] = dndlnm * np.log(10.0) * dv_dz_dsr
    growth = cosmo.growthFactor(z_eval) / cosmo.growthFactor(0.0)
    np.savez_compressed(
        path,
        log10_m500c=log10_m,
        z=z,
        dn_dlog10m_dz_dsr=table,
        growth=growth,
        cosmology=np.array(repr(cosmo)),
    )
    return path


if __name__ == "__main__":
    print(make_cmb_table())
    print(make_halo_table())
