"""Map units: conversion of input maps to µK_CMB and point-source fluxes to temperatures."""

from __future__ import annotations

import astropy.units as u

T_CMB = 2.7255 * u.K  # CMB monopole temperature (Fixsen 2009), as in astropy's Planck18

# Accepted BUNIT spellings (case-insensitive), mapped to a canonical unit.
_BUNITS: dict[str, str] = {
    "uk_cmb": "uK_CMB",
    "uk": "uK_CMB",
    "muk": "uK_CMB",
    "microk": "uK_CMB",
    "k_cmb": "K_CMB",
    "k": "K_CMB",
    "mk_cmb": "mK_CMB",
    "jy/sr": "Jy/sr",
    "mjy/sr": "MJy/sr",
}

KNOWN_BUNITS = ("uK_CMB", "K_CMB", "mK_CMB", "Jy/sr", "MJy/sr")


def canonical_bunit(bunit: str) -> str | None:
    """The canonical spelling of a BUNIT value, or None if it is not supported."""
    return _BUNITS.get(bunit.strip().lower().replace(" ", ""))


def to_uk_cmb_factor(bunit: str, freq_ghz: float) -> float:
    """Multiplicative factor converting a map in ``bunit`` at ``freq_ghz`` to µK_CMB.

    Surface brightness (Jy/sr, MJy/sr) is converted with the derivative of the CMB blackbody
    at that frequency (astropy's ``thermodynamic_temperature`` equivalency).

    Raises
    ------
    ValueError
        If ``bunit`` is not one of :data:`KNOWN_BUNITS` (or a listed synonym).
    """
    canon = canonical_bunit(bunit)
    if canon is None:
        raise ValueError(f"unknown BUNIT {bunit!r} (expected one of {', '.join(KNOWN_BUNITS)})")
    if canon.endswith("_CMB"):
        return {"uK_CMB": 1.0, "mK_CMB": 1e3, "K_CMB": 1e6}[canon]
    unit = u.Jy / u.sr if canon == "Jy/sr" else u.MJy / u.sr
    equiv = u.thermodynamic_temperature(freq_ghz * u.GHz, T_cmb=T_CMB)
    return float((1.0 * unit).to(u.uK, equivalencies=equiv).value)


def jy_to_uk_cmb(flux_jy: float, freq_ghz: float, pixel_area_sr: float) -> float:
    """Temperature (µK_CMB) of a pixel of solid angle ``pixel_area_sr`` holding ``flux_jy``."""
    return flux_jy / pixel_area_sr * to_uk_cmb_factor("Jy/sr", freq_ghz)
