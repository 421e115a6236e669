"""The ``frcnn`` finder: a Faster R-CNN on g, r, i images (Deep-CEE, Chan & Stott 2019).

``find`` brings the tile's ``optical`` layer to the working scale of 4.208" (:mod:`.prep`:
pixels from 0.1" to 4.4" are resampled, coarser ones refused), stretches it (asinh), cuts
overlapping square windows (``window`` pixels, stride ``window × (1 − overlap)``; the last one of
a row or column moved inwards), runs the detector on batches of windows, and merges the boxes of
all windows with non-maximum suppression (IoU ``nms_iou``). Each surviving box becomes a
candidate: its raw score becomes a probability through the Platt scaling of the weights
(``platt.json``), its redshift comes from the red-sequence colours of the sources in the box
(:mod:`.photoz`, ``frcnn_z``, ``frcnn_z_err``, ``frcnn_z_alt`` for a second red sequence) and
its position is the box's central galaxy (``centre = "bcg"``, Deep-CEE's choice; by default
``centring = "brightest"``: the brightest red-sequence galaxy, kept within
``bcg_max_offset_arcmin`` of the box centre, else the box centre; with ``centring = "central"``
the red-sequence galaxy with the best luminosity × red-sequence density score within
``central_search_kpc``, kept within ``central_max_offset_kpc`` — better when BCGs sit at the
halo centre, worse on skies where many do not, so not the default) or the box centre
(``centre = "box"``).

``score_at`` scores given positions with the detection head (RoI-Align on the trunk's features of
a window centred there, torchvision's ``roi_heads`` fed the boxes instead of the proposals):
square boxes of 1.7', 3.4' and 5.6' centred on the position; the best class score, Platt-scaled.

torch is imported only inside methods, so plugin discovery never loads it.
"""

from __future__ import annotations

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

_CACHE: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()
BANDS = ("g", "r", "i")
#: Side of the square boxes ``score_at`` scores, working pixels (1.7', 3.4', 5.6').
FORCED_BOX_PIX = (24.0, 48.0, 80.0)


def shipped_weights() -> Path:
    """Folder of the weights shipped with clusterfw."""
    return Path(str(resources.files("clusterfw.plugins.finders.frcnn") / "weights"))


class _Loaded:
    """A loaded detector and its calibration."""

    def __init__(self, weights: Path, platt_path: Path, device: str) -> None:
        from clusterfw.core.errors import InputError
        from clusterfw.plugins.finders.frcnn.model import load_weights
        from clusterfw.plugins.finders.resnet.calibrate import Platt

        if not weights.is_file():
            raise InputError(str(weights), "frcnn weights file not found")
        if not platt_path.is_file():
            raise InputError(str(platt_path), "frcnn calibration file not found")
        self.model, self.meta = load_weights(str(weights), device)
        self.platt = Platt.load(platt_path)
        self.device = device
        self.window = int(self.model.config["window"])

    def prob(self, raw: np.ndarray) -> np.ndarray:
        """Platt probability of raw detector scores (through their logit)."""
        s = np.clip(np.asarray(raw, float), 1e-6, 1 - 1e-6)
        return self.platt(np.log(s / (1 - s)))


def _device(option: str) -> str:
    import torch

    if option == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if option == "cuda" and not torch.cuda.is_available():
        raise PluginError("frcnn: device 'cuda' requested but no GPU is available")
    return option


def window_starts(n: int, window: int, stride: int) -> np.ndarray:
    """Starts of windows of ``window`` pixels covering ``0..n`` with ``stride`` (last moved in)."""
    if n <= window:
        return np.array([0])
    s = list(range(0, n - window + 1, stride))
    if s[-1] != n - window:
        s.append(n - window)
    return np.array(s)


class FrcnnFinder(Finder):
    """Faster R-CNN optical cluster finder with calibrated probabilities and red-sequence z."""

    name: ClassVar[str] = "frcnn"
    version: ClassVar[str] = "1.1.0"
    score_kind: ClassVar[str] = "probability"
    margin_arcmin: ClassVar[float] = 6.0
    requires: ClassVar[tuple[LayerRequirement, ...]] = (LayerRequirement("optical", BANDS),)

    class Options(PluginOptions):
        """Options of the ``frcnn`` finder (``-o frcnn.KEY=VALUE``)."""

        weights: str | None = Field(
            None, description="safetensors weights (default: the shipped weights)"
        )
        calibration: str | None = Field(
            None, description="Platt JSON (default: platt.json beside the weights)"
        )
        p_min: float = Field(0.05, ge=0.0, le=1.0, description="report boxes with p ≥ p_min")
        overlap: float = Field(0.5, ge=0.0, lt=0.95, description="overlap of adjacent windows")
        nms_iou: float = Field(0.3, gt=0.0, le=1.0, description="IoU of the NMS across windows")
        batch_size: int = Field(8, ge=1, description="windows per forward pass")
        centre: str = Field("bcg", pattern="^(bcg|box)$", description="bcg|box")
        photoz: bool = Field(True, description="red-sequence photo-z of each box")
        centring: str = Field(
            "brightest",
            pattern="^(central|brightest)$",
            description="central (luminosity × red-sequence density) | brightest red galaxy",
        )
        central_search_kpc: float = Field(
            600.0, gt=0.0, description="centrals searched within this of the box centre (kpc)"
        )
        central_sigma_kpc: float = Field(
            100.0, gt=0.0, description="scale of the red-sequence density around a central (kpc)"
        )
        central_gamma: float = Field(
            2.0, ge=0.0, description="weight of ln L against ln density in the central's score"
        )
        central_max_offset_kpc: float | None = Field(
            200.0, gt=0.0, description="keep the box centre when the central is farther (kpc)"
        )
        bcg_reach_arcmin: float | None = Field(
            None, gt=0.0, description="search the BCG within this of the box centre (arcmin)"
        )
        bcg_max_offset_arcmin: float | None = Field(
            0.5, gt=0.0, description="keep the box centre when the BCG is farther (arcmin)"
        )
        no_red_weight: float = Field(
            0.5, ge=0.0, le=1.0, description="score factor of boxes without a red-sequence excess"
        )
        device: str = Field("auto", pattern="^(auto|cpu|cuda)$", description="auto|cpu|cuda")
        threads: int = Field(0, ge=0, description="torch CPU threads (0: torch's default)")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._net()  # weights and calibration checked before any tile is read

    def _net(self) -> _Loaded:
        o = self.options
        weights = Path(o.weights) if o.weights else shipped_weights() / "frcnn.safetensors"
        platt = Path(o.calibration) if o.calibration else weights.with_name("platt.json")
        if o.threads:
            import torch

            torch.set_num_threads(int(o.threads))
        key = (str(weights.resolve()), str(platt.resolve()), _device(o.device))
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = _Loaded(weights, platt, key[2])
            return _CACHE[key]

    # ------------------------------------------------------------------ input
    @staticmethod
    def _optical(tile: Tile) -> tuple[Any, np.ndarray, float, np.ndarray]:
        """The optical cutout, its g, r, i pixels, pixel scale (") and the PSF FWHM (") of each
        of g, r, i (a band without one gets the widest known, else 1")."""
        from astropy.wcs.utils import proj_plane_pixel_scales

        try:
            cut = tile.layer("optical")
        except KeyError as exc:
            raise PluginError(f"frcnn: needs an 'optical' layer ({exc.args[0]})") from None
        missing = [b for b in BANDS if b not in cut.band_names]
        if missing:
            raise PluginError(
                f"frcnn: optical layer {cut.layer!r} lacks band(s) {', '.join(missing)} "
                f"(has {', '.join(cut.band_names)})"
            )
        idx = [cut.band_index(b) for b in BANDS]
        scales = proj_plane_pixel_scales(cut.wcs.celestial) * 3600.0
        pix = float(np.sqrt(scales[0] * scales[1]))
        fwhm = [cut.bands[i].psf_fwhm_arcsec for i in idx]
        widest = max((float(f) for f in fwhm if f), default=1.0)
        # per band: the photometry corrects each band by its own PSF's aperture fraction
        psf = np.array([float(f) if f else widest for f in fwhm])
        if idx == list(range(len(idx))) and cut.pixels.shape[0] == len(idx):
            img = np.asarray(cut.pixels, np.float32)  # no copy of a large tile
        else:
            img = np.asarray(cut.pixels[idx], np.float32)
        return cut, img, pix, psf

    # ------------------------------------------------------------------ detection
    def detect(self, images: np.ndarray, pixel_arcsec: float) -> dict[str, np.ndarray]:
        """Boxes (input pixels, edge frame) and raw scores over a whole g, r, i image.

        Parameters
        ----------
        images : numpy.ndarray
            ``(3, ny, nx)`` g, r, i nanomaggies per pixel.
        pixel_arcsec : float

        Returns
        -------
        dict
            ``boxes`` ``(n, 4)`` in input pixels (edge frame), ``boxes_work`` in working pixels,
            ``raw`` scores, ``work_valid`` (fraction of working pixels with data).
        """
        import torch
        from torchvision.ops import nms

        from clusterfw.plugins.finders.frcnn.prep import stretch, to_working_scale

        net = self._net()
        work, factor = to_working_scale(images, pixel_arcsec)
        valid = np.all(np.isfinite(work), axis=0)
        x = stretch(work)
        _, ny, nx = x.shape
        w = net.window
        if ny < w or nx < w:
            pad = np.zeros((3, max(ny, w), max(nx, w)), np.float32)
            pad[:, :ny, :nx] = x
            x = pad
        stride = max(1, int(round(w * (1 - self.options.overlap))))
        ys = window_starts(x.shape[1], w, stride)
        xs = window_starts(x.shape[2], w, stride)
        corners = [(x0, y0) for y0 in ys for x0 in xs]
        boxes, scores = [], []
        bs = int(self.options.batch_size)
        with torch.inference_mode():
            for i in range(0, len(corners), bs):
                chunk = corners[i : i + bs]
                batch = [torch.from_numpy(np.ascontiguousarray(x[:, y0 : y0 + w, x0 : x0 + w]))
                         .to(net.device) for x0, y0 in chunk]  # fmt: skip
                for (x0, y0), r in zip(chunk, net.model(batch), strict=True):
                    b = r["boxes"].float().cpu().numpy() + np.array([x0, y0, x0, y0], np.float32)
                    boxes.append(b)
                    scores.append(r["scores"].float().cpu().numpy())
        b = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
        s = np.concatenate(scores) if scores else np.zeros(0, np.float32)
        # boxes whose centre has no data are dropped; then NMS across windows
        cx = np.clip(((b[:, 0] + b[:, 2]) / 2).astype(int), 0, nx - 1)
        cy = np.clip(((b[:, 1] + b[:, 3]) / 2).astype(int), 0, ny - 1)
        ok = valid[cy, cx] if b.size else np.zeros(0, bool)
        b, s = b[ok], s[ok]
        if b.size:
            keep = nms(torch.from_numpy(b), torch.from_numpy(s), float(self.options.nms_iou))
            keep = keep.numpy()
            b, s = b[keep], s[keep]
        return {
            "boxes": b * factor,
            "boxes_work": b,
            "raw": s.astype(float),
            "factor": np.asarray(factor),
            "valid_fraction": np.asarray(float(valid.mean()) if valid.size else 0.0),
        }

    def find(self, tile: Tile) -> pa.Table:
        """Candidates of the tile core (see the module docstring).

        Returns
        -------
        pyarrow.Table
            ``score`` = calibrated probability ≥ ``p_min``; extra columns ``frcnn_raw_score``,
            ``frcnn_box_arcmin``, ``frcnn_z``, ``frcnn_z_err``, ``frcnn_n_red``,
            ``frcnn_lambda`` (:mod:`.richness`), ``frcnn_z_alt``, ``frcnn_bcg_centred``.
        """
        from clusterfw.plugins.finders.frcnn.photoz import box_photoz, find_sources
        from clusterfw.plugins.finders.frcnn.richness import richness

        net = self._net()
        cut, img, pix, psf = self._optical(tile)
        det = self.detect(img, pix)
        p = net.prob(det["raw"])
        sel = p >= self.options.p_min
        boxes, p, raw = det["boxes"][sel], p[sel], det["raw"][sel]
        n = len(p)
        xc = (boxes[:, 0] + boxes[:, 2]) / 2 - 0.5  # edge -> pixel-centre frame
        yc = (boxes[:, 1] + boxes[:, 3]) / 2 - 0.5
        z = np.full(n, np.nan)
        zerr = np.full(n, np.nan)
        nred = np.zeros(n)
        zalt = np.full(n, np.nan)
        lam = np.full(n, np.nan)
        centred = np.zeros(n, bool)
        o = self.options
        src = None
        if n and (o.photoz or o.centre == "bcg" or o.no_red_weight < 1.0):
            src = find_sources(img, pix, psf)
            shape = img.shape[1:]
            vf = float(det["valid_fraction"])
            reach = o.bcg_reach_arcmin * 60.0 / pix if o.bcg_reach_arcmin else None
            far = o.bcg_max_offset_arcmin * 60.0 / pix if o.bcg_max_offset_arcmin else np.inf
            for k in range(n):
                edge = tuple(float(v) - 0.5 for v in boxes[k])
                pz = box_photoz(
                    src,
                    edge,  # type: ignore[arg-type]
                    shape,
                    vf,
                    reach,
                    pixel_arcsec=pix,
                    centring=o.centring,
                    search_kpc=o.central_search_kpc,
                    sigma_kpc=o.central_sigma_kpc,
                    gamma=o.central_gamma,
                    max_offset_kpc=o.central_max_offset_kpc,
                )
                if o.photoz:
                    z[k], zerr[k], nred[k], zalt[k] = pz.z, pz.z_err, pz.n_red, pz.z_alt
                if not np.isfinite(pz.z):
                    p[k] *= o.no_red_weight
                if o.centre == "bcg" and pz.centred and np.hypot(pz.x - xc[k], pz.y - yc[k]) <= far:
                    xc[k], yc[k], centred[k] = pz.x, pz.y, True
        if src is not None and o.photoz:
            # richness within RICHNESS_KPC of the candidate's position, at its photo-z
            lam = richness(src, xc, yc, z, pix, float(det["valid_fraction"]) * img[0].size)
        ra, dec = cut.wcs.celestial.pixel_to_world_values(xc, yc)
        ra = np.asarray(ra, float) % 360.0
        dec = np.asarray(dec, float)
        keep = tile.in_core(ra, dec) if n else np.zeros(0, bool)
        keep &= p >= self.options.p_min  # boxes down-weighted for lacking a red sequence
        side = 0.5 * ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) * pix / 60.0
        f = plugin_field
        return candidate_table(
            finder=self.name,
            score_kind=self.score_kind,
            ra=ra[keep],
            dec=dec[keep],
            score=p[keep],
            tile_id=tile.tile_id,
            extra={
                "frcnn_raw_score": (f("frcnn_raw_score", pa.float32(), "",
                                      "detector class score before Platt scaling"),
                                    raw[keep].astype(np.float32)),
                "frcnn_box_arcmin": (f("frcnn_box_arcmin", pa.float32(), "arcmin",
                                       "mean side of the detection box"),
                                     side[keep].astype(np.float32)),
                "frcnn_z": (f("frcnn_z", pa.float32(), "",
                              "red-sequence photometric redshift of the box (NaN: none)"),
                            z[keep].astype(np.float32)),
                "frcnn_z_err": (f("frcnn_z_err", pa.float32(), "",
                                  "1σ uncertainty of frcnn_z"), zerr[keep].astype(np.float32)),
                "frcnn_n_red": (f("frcnn_n_red", pa.float32(), "",
                                  "red-sequence excess count at frcnn_z"),
                                nred[keep].astype(np.float32)),
                "frcnn_lambda": (f("frcnn_lambda", pa.float32(), "",
                                   "red-sequence richness within 500 proper kpc at frcnn_z "
                                   "(background-subtracted; a mass proxy)"),
                                 lam[keep].astype(np.float32)),
                "frcnn_z_alt": (f("frcnn_z_alt", pa.float32(), "",
                                  "redshift of a second red sequence in the box (NaN: none)"),
                                zalt[keep].astype(np.float32)),
                "frcnn_bcg_centred": (f("frcnn_bcg_centred", pa.bool_(), "",
                                        "position is the box's central red-sequence galaxy"),
                                      centred[keep]),
            },
        )  # fmt: skip

    # ------------------------------------------------------------------ forced scoring
    def score_window_boxes(
        self, images: np.ndarray, pixel_arcsec: float, xe: np.ndarray, ye: np.ndarray
    ) -> np.ndarray:
        """Raw detection-head scores of square boxes centred at ``(xe, ye)``.

        ``(xe, ye)``: positions in input pixels, edge frame (pixel ``i`` spans ``[i, i + 1)``).

        The best over the sizes :data:`FORCED_BOX_PIX`; NaN where the position has no data.
        """
        import torch

        from clusterfw.plugins.finders.frcnn.prep import stretch, to_working_scale

        net = self._net()
        work, factor = to_working_scale(images, pixel_arcsec)
        xw, yw = np.asarray(xe, float) / factor, np.asarray(ye, float) / factor
        valid = np.all(np.isfinite(work), axis=0)
        x = stretch(work)
        _, ny, nx = x.shape
        w = net.window
        if ny < w or nx < w:
            pad = np.zeros((3, max(ny, w), max(nx, w)), np.float32)
            pad[:, :ny, :nx] = x
            x = pad
        out = np.full(xw.size, np.nan)
        m = net.model
        bs = int(self.options.batch_size)
        with torch.inference_mode():
            for i in range(0, xw.size, bs):
                idx = np.arange(i, min(i + bs, xw.size))
                wins, boxes, corner = [], [], []
                for j in idx:
                    x0 = int(np.clip(round(xw[j] - w / 2), 0, x.shape[2] - w))
                    y0 = int(np.clip(round(yw[j] - w / 2), 0, x.shape[1] - w))
                    wins.append(torch.from_numpy(np.ascontiguousarray(
                        x[:, y0 : y0 + w, x0 : x0 + w])).to(net.device))  # fmt: skip
                    cx, cy = xw[j] - x0, yw[j] - y0
                    h = np.asarray(FORCED_BOX_PIX) / 2
                    b = np.stack([cx - h, cy - h, cx + h, cy + h], axis=1).clip(0, w)
                    boxes.append(torch.from_numpy(b.astype(np.float32)).to(net.device))
                    corner.append((x0, y0))
                images_t, _ = m.transform(wins)
                feats = m.backbone(images_t.tensors)
                pooled = m.roi_heads.box_roi_pool(feats, boxes, images_t.image_sizes)
                logits, _ = m.roi_heads.box_predictor(m.roi_heads.box_head(pooled))
                prob = torch.softmax(logits.float(), -1)[:, 1].cpu().numpy()
                prob = prob.reshape(len(idx), len(FORCED_BOX_PIX)).max(axis=1)
                out[idx] = prob
        ix = np.clip(np.floor(xw).astype(int), 0, nx - 1)
        iy = np.clip(np.floor(yw).astype(int), 0, ny - 1)
        inside = (xw >= 0) & (xw < nx) & (yw >= 0) & (yw < ny)
        out[~inside] = np.nan
        out[inside & ~valid[iy, ix]] = np.nan
        return out

    def score_at(self, tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Calibrated probability of the detection head for boxes centred on each position.

        NaN for positions off the optical cutout or without data.
        """
        ra = np.atleast_1d(np.asarray(ra, float))
        dec = np.atleast_1d(np.asarray(dec, float))
        net = self._net()
        cut, img, pix, _ = self._optical(tile)
        x, y = cut.wcs.celestial.world_to_pixel_values(ra, dec)
        xe = np.nan_to_num(np.asarray(x, float), nan=-1e9) + 0.5
        ye = np.nan_to_num(np.asarray(y, float), nan=-1e9) + 0.5
        raw = self.score_window_boxes(img, pix, xe, ye)
        p = net.prob(np.nan_to_num(raw, nan=0.5))
        p[~np.isfinite(raw)] = np.nan
        return p
