"""The ``xray`` finder: extended X-ray sources, classified by Kosiba's CNN on X-ray + optical.

``find`` detects sources on the tile's X-ray counts (:mod:`.detect`: multi-scale Poisson
detection, Cash fits of β-model vs PSF), keeps those with ``det_like ≥ det_like_min`` and
``ext_like ≥ ext_like_min`` in the tile core, and scores each with the classifier: the
both-channel network (X-ray + g, r, i) where an optical layer covers the candidate's cutout,
the X-ray-only network elsewhere (column ``xray_channels``: ``xray+optical`` or ``xray``).
``score`` is the Platt-calibrated probability of the label task the shipped networks were
trained on (their model card says which; ``clusterfw train xray --label``): ``real`` (default,
Kosiba's task) — the detection is the extended emission of a group or cluster (a halo of
M500c ≥ 3e13 Msun) rather than a point source (AGN) or a background fluctuation; ``mass`` — a
cluster of M500c ≥ 1e14 Msun. Both at the simulator's mix of detected X-ray candidates. The
mass cut of a catalogue is then a matter of the detection's counts/extent or of a combination
with a mass-selecting finder (docs/finders/xray.md).

``score_at`` classifies cutouts centred on any positions the same way, so SZ and optical
candidates get an X-ray opinion in combinations (NaN where the X-ray layer has no data).

torch is imported only inside methods.
"""

from __future__ import annotations

import math
import threading
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from clusterfw.core.errors import PluginError
from clusterfw.core.layers.requirements import LayerRequirement
from clusterfw.core.plugin_api import Finder, PluginOptions
from clusterfw.core.schema import candidate_table, plugin_field
from clusterfw.core.sky import Tile

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
OPTICAL_BANDS = ("g", "r", "i")
MIN_COVERED = 0.9


def shipped_weights() -> Path:
    """Folder of the weights shipped with clusterfw."""
    return Path(str(resources.files("clusterfw.plugins.finders.xray") / "weights"))


class _Net:
    """One loaded network with its Platt scaling."""

    def __init__(self, folder: Path, mode: str) -> None:
        from clusterfw.plugins.finders.xray.calibrate import Platt
        from clusterfw.plugins.finders.xray.model import load_weights

        weights = folder / f"xray_{mode}.safetensors"
        platt = folder / f"platt_{mode}.json"
        for path in (weights, platt):
            if not path.is_file():
                raise PluginError(f"xray: {path}: file not found")
        self.model, self.meta = load_weights(str(weights))
        self.platt = Platt.load(platt)
        self.mode = mode
        scales = self.meta.get("optical_scales")
        self.scales = np.asarray(scales, float) if scales else None

    def probability(self, counts, bkg, optical) -> np.ndarray:
        """Calibrated probabilities of network-grid cutouts."""
        import torch

        from clusterfw.plugins.finders.xray.model import logit
        from clusterfw.plugins.finders.xray.preprocess import network_input

        if counts.shape[0] == 0:
            return np.zeros(0)
        x = network_input(self.mode, counts, bkg, optical, self.scales)
        with torch.inference_mode():
            lg = logit(self.model(torch.from_numpy(x))).numpy()
        return self.platt(lg)


def _band_index(cut: Any) -> int:
    """The X-ray band overlapping 0.5–2 keV most (the networks' band)."""
    best, which = -1.0, 0
    for i, b in enumerate(cut.bands):
        overlap = min(2.0, float(b.e_max_kev)) - max(0.5, float(b.e_min_kev))
        if overlap > best:
            best, which = overlap, i
    return which


class XrayFinder(Finder):
    """Extended X-ray sources classified by Kosiba's CNN (X-ray + optical cutouts)."""

    name: ClassVar[str] = "xray"
    version: ClassVar[str] = "1.0.0"
    score_kind: ClassVar[str] = "probability"
    margin_arcmin: ClassVar[float] = 5.0
    requires: ClassVar = (
        LayerRequirement("xray"),
        LayerRequirement("optical", OPTICAL_BANDS, optional=True),
    )

    class Options(PluginOptions):
        """Options of the ``xray`` finder (``-o xray.KEY=VALUE``)."""

        weights: str | None = Field(
            None,
            description="folder with xray_<mode>.safetensors + platt_<mode>.json "
            "(default: the shipped weights)",
        )
        nu_min: float = Field(4.0, gt=0, description="seed significance (Gaussian σ equivalent)")
        det_like_min: float = Field(6.0, ge=0, description="minimum detection likelihood")
        ext_like_min: float = Field(3.0, ge=0, description="minimum extent likelihood")
        p_min: float = Field(0.0, ge=0, le=1, description="report only probability ≥ p_min")
        psf_fwhm_arcsec: float | None = Field(
            None, gt=0, description="PSF FWHM when the X-ray layer has no PSFFWHM"
        )
        use_optical: bool = Field(True, description="use the both-channel network where optical")
        threads: int = Field(0, ge=0, description="torch CPU threads (0: torch's default)")

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._nets()  # weights and calibration checked before any tile is read

    def _nets(self) -> dict[str, _Net]:
        folder = Path(self.options.weights) if self.options.weights else shipped_weights()
        if self.options.threads:
            import torch

            torch.set_num_threads(int(self.options.threads))
        key = (str(folder.resolve()), "nets")
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = {m: _Net(folder, m) for m in ("xray", "both")}
            return _CACHE[key]

    # ------------------------------------------------------------------ cutouts + scores
    def _classify(
        self, tile: Tile, ra: np.ndarray, dec: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(probability, p_xray, p_both, uses_optical)`` of cutouts centred on positions."""
        from clusterfw.plugins.finders.xray.cutouts import to_net_grid

        nets = self._nets()
        xr = tile.layer("xray")
        i = _band_index(xr)
        expo = np.nan_to_num(xr.exposure[i], nan=0.0)
        bk = xr.background[i]
        if not np.any(np.isfinite(bk)):  # no BACKGROUND extension: estimate it
            bk = self._estimated_background(xr, i)
        planes = np.stack([xr.pixels[i], bk])
        planes = np.where(expo > 0, planes, np.nan)
        opt = None
        if self.options.use_optical:
            try:
                opt = tile.layer("optical")
                order = [opt.band_index(b) for b in OPTICAL_BANDS]
            except (KeyError, ValueError):
                opt = None
        n = ra.size
        counts = np.zeros((n, 32, 32))
        bkg = np.zeros((n, 32, 32))
        optical = np.zeros((n, 3, 32, 32))
        ok = np.zeros(n, bool)
        has_opt = np.zeros(n, bool)
        for j in range(n):
            cut, cov = to_net_grid(planes, xr.wcs, float(ra[j]), float(dec[j]))
            if cov < MIN_COVERED:
                continue
            ok[j] = True
            bk = cut[1]
            counts[j] = np.nan_to_num(cut[0])
            bkg[j] = np.nan_to_num(bk)
            if opt is not None:
                oc, ocov = to_net_grid(opt.pixels[order], opt.wcs, float(ra[j]), float(dec[j]))
                if ocov >= MIN_COVERED:
                    has_opt[j] = True
                    optical[j] = oc
        p_x = np.full(n, np.nan)
        p_b = np.full(n, np.nan)
        p_x[ok] = nets["xray"].probability(counts[ok], bkg[ok], None)
        sel = ok & has_opt
        p_b[sel] = nets["both"].probability(counts[sel], bkg[sel], optical[sel])
        prob = np.where(sel, p_b, p_x)
        return prob, p_x, p_b, sel

    def _estimated_background(self, xr: Any, i: int) -> np.ndarray:
        """The source-masked background map of a tile's X-ray band (cached per cutout)."""
        from clusterfw.plugins.finders.xray.cutouts import pixel_arcsec
        from clusterfw.plugins.finders.xray.detect import (
            DetectSettings,
            psf_radii,
            source_masked_background,
        )

        cache = getattr(self, "_bkg_cache", None)
        if cache is not None and cache[0] is xr:
            return cache[1]
        psf = xr.bands[i].psf_fwhm_arcsec or self.options.psf_fwhm_arcsec or 30.0
        counts = np.nan_to_num(xr.pixels[i], nan=0.0).astype(np.float64)
        expo = np.nan_to_num(xr.exposure[i], nan=0.0).astype(np.float64)
        radii = psf_radii(float(psf), pixel_arcsec(xr.wcs), DetectSettings().scales_psf_sigma)
        bmap = source_masked_background(counts, expo, radii)
        self._bkg_cache = (xr, bmap)
        return bmap

    # ------------------------------------------------------------------ finder API
    def find(self, tile: Tile) -> pa.Table:
        """Detect extended X-ray sources in the tile and classify them.

        Parameters
        ----------
        tile : Tile
            Carries an ``xray`` layer (and an ``optical`` one with g, r, i where available).

        Returns
        -------
        pyarrow.Table
            Candidates in the core with ``score`` = calibrated probability ≥ ``p_min``, the
            standard ``snr`` (detection significance) and ``xray_*`` columns.
        """
        from clusterfw.plugins.finders.xray.cutouts import pixel_arcsec
        from clusterfw.plugins.finders.xray.detect import DetectSettings, detect_sources

        o = self.options
        xr = tile.layer("xray")
        i = _band_index(xr)
        band = xr.bands[i]
        psf = band.psf_fwhm_arcsec or o.psf_fwhm_arcsec
        if psf is None:
            raise PluginError(
                "xray: the X-ray layer has no PSFFWHM; give -o xray.psf_fwhm_arcsec=ARCSEC"
            )
        bkg = xr.background[i] if getattr(band, "has_background", False) else None
        src = detect_sources(
            xr.pixels[i],
            xr.exposure[i],
            bkg,
            float(psf),
            pixel_arcsec(xr.wcs),
            DetectSettings(nu_min=o.nu_min),
        )
        ra, dec = xr.wcs.pixel_to_world_values(src.x, src.y)
        ra, dec = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
        keep = (src.det_like >= o.det_like_min) & (src.ext_like >= o.ext_like_min)
        keep &= tile.in_core(ra, dec) if ra.size else np.zeros(0, bool)
        idx = np.flatnonzero(keep)
        ra, dec = ra[idx], dec[idx]
        prob, p_x, p_b, with_opt = self._classify(tile, ra, dec)
        ok = np.isfinite(prob) & (prob >= o.p_min)
        idx, ra, dec = idx[ok], ra[ok], dec[ok]
        prob, p_x, p_b, with_opt = prob[ok], p_x[ok], p_b[ok], with_opt[ok]
        pos_err = np.full(idx.size, np.nan)

        def col(name: str, values: np.ndarray, unit: str, desc: str, dtype=None):
            return (plugin_field(name, dtype or pa.float32(), unit, desc), np.asarray(values))

        channels = np.where(with_opt, "xray+optical", "xray").astype(object)
        return candidate_table(
            finder=self.name,
            score_kind=self.score_kind,
            ra=ra,
            dec=dec,
            score=prob.astype(np.float32),
            tile_id=tile.tile_id,
            optional={"snr": src.nu[idx].astype(np.float32), "pos_err": pos_err},
            extra={
                "xray_channels": col(
                    "xray_channels", channels, "",
                    "classifier inputs: xray+optical (optical layer covers) or xray", pa.string(),
                ),
                "xray_p_xray": col("xray_p_xray", p_x, "", "X-ray-only network probability"),
                "xray_p_both": col(
                    "xray_p_both", p_b, "", "X-ray + optical network probability (NaN: no optical)"
                ),
                "xray_det_like": col("xray_det_like", src.det_like[idx], "",
                                     "detection likelihood (C_bkg - C_best) / 2"),
                "xray_ext_like": col("xray_ext_like", src.ext_like[idx], "",
                                     "extent likelihood (C_point - C_beta) / 2"),
                "xray_extent": col("xray_extent", src.extent_arcsec[idx], "arcsec",
                                   "fitted beta-model core radius (0: point-like)"),
                "xray_counts": col("xray_counts", src.counts[idx], "count",
                                   "fitted source counts"),
                "xray_counts_err": col("xray_counts_err", src.counts_err[idx], "count",
                                       "1-sigma error of the source counts"),
                "xray_rate": col("xray_rate", src.rate[idx], "count/s",
                                 "source counts / exposure at the source"),
            },
        )  # fmt: skip

    def score_at(self, tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Calibrated probability of cutouts centred on each position (NaN off the X-ray data).

        Uses the both-channel network where the optical layer covers the cutout, else the
        X-ray-only one, as :meth:`find`.
        """
        ra = np.atleast_1d(np.asarray(ra, float))
        dec = np.atleast_1d(np.asarray(dec, float))
        prob = self._classify(tile, ra, dec)[0]
        return np.where(np.isfinite(prob), prob, math.nan)
