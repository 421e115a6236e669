"""Survey presets for the optical renderer: pixel scale, seeing and depth per band.

``sdss``
    SDSS imaging (DR7, Abazajian et al. 2009, ApJS 182, 543; DR9 frames used by Deep-CEE,
    Chan & Stott 2019): 0.396"/pixel; median PSF FWHM 1.4" in r (≈1.5" in g, 1.3" in i/z);
    depths 22.2 (g), 22.2 (r), 21.3 (i), 20.5 (z) — the DR7 95 %-completeness limits for point
    sources, used here as the 10σ ``MAGLIM`` (so the simulated frames are ~0.5–0.7 mag deeper at
    5σ than real SDSS frames; see docs/sim-optical.md).
``des-coarse``
    The ``des`` seeing and depths on 0.526" pixels (2 × 2 DES pixels; the PSF is still
    pixel-integrated and the noise per pixel set by ``MAGLIM``): not a survey's pixels, but a
    field renders ~4 times faster, for training sets of detectors that work at ≥ 1" pixels
    (``frcnn`` works at 2.1").
``des``
    DES coadds (DR1, Abbott et al. 2018, ApJS 239, 18): 0.263"/pixel; median PSF FWHM 1.12 (g),
    0.96 (r), 0.88 (i), 0.84 (z)"; median 10σ depths in 1.95" apertures 24.33 (g), 24.08 (r),
    23.44 (i), 22.69 (z). Coadd tiles are 0.7306° on a side (10000² pixels) and overlap by ~1'.

Both use a Moffat PSF with ``β = 3`` (close to ground-based seeing profiles; Trujillo et al.
2001, MNRAS 328, 977 find β ≈ 2.5–4.5). ``seeing_scatter`` is the fractional (log-normal)
scatter of the FWHM drawn per field when :func:`render_optical` is asked to vary the seeing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clusterfw.core.errors import ClusterfwError


class BandSetting(BaseModel):
    """Seeing and depth of one filter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    psf_fwhm_arcsec: float = Field(gt=0.0, description="Moffat PSF FWHM, arcsec")
    maglim: float = Field(description="10σ point-source depth, AB mag")


class OpticalPreset(BaseModel):
    """Pixel scale, PSF and depth of a survey (see the module docstring for the sources)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pixel_arcsec: float = Field(gt=0.0)
    bands: dict[str, BandSetting]
    psf_beta: float = Field(3.0, gt=1.0, description="Moffat β")
    seeing_scatter: float = Field(0.1, ge=0.0, description="fractional FWHM scatter per field")
    tile_deg: float = Field(0.7306, gt=0.0, description="coadd tile size for mosaics")
    tile_overlap_arcmin: float = Field(1.0, ge=0.0)
    bright_limit: float = Field(14.0, description="brightest field galaxy and star drawn (r)")
    faint_margin: float = Field(1.0, description="sources drawn to MAGLIM(r) + faint_margin")

    def band(self, name: str) -> BandSetting:
        """The settings of filter ``name``; a one-line error when the preset lacks it."""
        try:
            return self.bands[name]
        except KeyError:
            raise ClusterfwError(
                f"--bands: preset {self.name!r} has no filter {name!r} "
                f"(it has {', '.join(self.bands)})"
            ) from None

    @property
    def faint_limit_r(self) -> float:
        """Faintest r magnitude simulated."""
        return self.bands["r"].maglim + self.faint_margin


SDSS = OpticalPreset(
    name="sdss",
    pixel_arcsec=0.396,
    bands={
        "g": BandSetting(psf_fwhm_arcsec=1.5, maglim=22.2),
        "r": BandSetting(psf_fwhm_arcsec=1.4, maglim=22.2),
        "i": BandSetting(psf_fwhm_arcsec=1.3, maglim=21.3),
        "z": BandSetting(psf_fwhm_arcsec=1.3, maglim=20.5),
    },
    tile_deg=2048 * 0.396 / 3600.0 * 1.0,  # an SDSS frame is 2048 × 1489 pixels
    tile_overlap_arcmin=0.5,
)

DES = OpticalPreset(
    name="des",
    pixel_arcsec=0.263,
    bands={
        "g": BandSetting(psf_fwhm_arcsec=1.12, maglim=24.33),
        "r": BandSetting(psf_fwhm_arcsec=0.96, maglim=24.08),
        "i": BandSetting(psf_fwhm_arcsec=0.88, maglim=23.44),
        "z": BandSetting(psf_fwhm_arcsec=0.84, maglim=22.69),
    },
)

DES_COARSE = DES.model_copy(update={"name": "des-coarse", "pixel_arcsec": 2 * DES.pixel_arcsec})

PRESETS: dict[str, OpticalPreset] = {"sdss": SDSS, "des": DES, "des-coarse": DES_COARSE}
DEFAULT_PRESET = "des"


def get_preset(preset: str | OpticalPreset) -> OpticalPreset:
    """A preset by name (``sdss``, ``des``) or the preset itself."""
    if isinstance(preset, OpticalPreset):
        return preset
    try:
        return PRESETS[str(preset).lower()]
    except KeyError:
        raise ClusterfwError(
            f"--preset: unknown optical preset {preset!r} (choose from {', '.join(PRESETS)})"
        ) from None
