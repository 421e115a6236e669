"""The ``resnet`` finder: DeepSZ's ResNet classifier run over staggered cutouts of each tile.

``find`` cuts 32 × 32-pixel (8') cutouts on a 6'-stride grid anchored to the parent map's pixel
grid (cutout ``k`` covers parent pixels ``24 k … 24 k + 31``, as the training grid; the last
cutout of a row or column is moved inwards when it would stick out of the map), scores them
with the network, calibrates the logits with Platt scaling and reports every cutout centre in
the tile core as a candidate whose ``score`` is the probability (``score_kind`` ``probability``)
that a cluster (Mvir ≥ 2e14 Msun, z > 0.25) lies in its central 6' × 6'.

``score_at`` scores a cutout centred on each requested position (to the nearest pixel, i.e.
within 0.125'), so a cluster found by another finder is always seen where the network was
trained to look for it: the edge effect of a fixed grid (DeepSZ Fig. 9c) disappears.

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
from clusterfw.core.plugin_api import Finder, PluginOptions
from clusterfw.core.schema import candidate_table, plugin_field
from clusterfw.core.sky import PixelBoxCore, Tile

_CACHE: dict[tuple[str, str, str, str], Any] = {}
POSITION_FILE = "position.safetensors"
_LOCK = threading.Lock()


def shipped_weights() -> Path:
    """Path of the weights shipped with clusterfw."""
    return Path(str(resources.files("clusterfw.plugins.finders.resnet") / "weights"))


class _Loaded:
    """A loaded network with everything needed to score cutouts.

    The classifier's batch normalisations are folded into the preceding convolutions
    (:func:`~clusterfw.plugins.finders.resnet.model.fold_batchnorm`: the same function, fewer
    passes over memory); the position head (``position.safetensors``) is loaded when given.
    """

    def __init__(
        self, weights: Path, platt_path: Path, device: str, position: Path | None = None
    ) -> None:
        from clusterfw.plugins.finders.resnet.calibrate import Platt
        from clusterfw.plugins.finders.resnet.model import fold_batchnorm, load_weights

        if not weights.is_file():
            raise PluginError(f"resnet: weights file not found: {weights}")
        if not platt_path.is_file():
            raise PluginError(f"resnet: calibration file not found: {platt_path}")
        model, self.meta = load_weights(str(weights), device)
        self.model = fold_batchnorm(model)
        self.platt = Platt.load(platt_path)
        self.device = device
        self.size = int(self.meta.get("cutout_size", 32))
        self.pixel_arcmin = float(self.meta.get("pixel_arcmin", 0.25))
        self.stride_px = int(round(float(self.meta.get("stride_arcmin", 6.0)) / self.pixel_arcmin))
        self.freqs = np.asarray(self.meta.get("freq_ghz", [95.0, 150.0, 220.0]), float)
        self.scales = np.asarray(self.meta["scales_uk"], float)
        if device == "cpu":
            import torch

            self.model = self.model.to(memory_format=torch.channels_last)
        self.position = None
        if position is not None:
            from clusterfw.plugins.finders.resnet.position import load_head, n_features

            head, _ = load_head(position, n_features(self.model))
            self.position = head.to(device)


def _device(option: str) -> str:
    import torch

    if option == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if option == "cuda" and not torch.cuda.is_available():
        raise PluginError("resnet: device 'cuda' requested but no GPU is available")
    return option


class ResNetFinder(Finder):
    """DeepSZ ResNet cutout classifier (Lin et al. 2021 §2.2), calibrated probabilities."""

    name: ClassVar[str] = "resnet"
    version: ClassVar[str] = "1.1.0"
    score_kind: ClassVar[str] = "probability"
    margin_arcmin: ClassVar[float] = 8.0

    class Options(PluginOptions):
        """Options of the ``resnet`` finder (``-o resnet.KEY=VALUE``)."""

        weights: str | None = Field(
            None, description="safetensors weights file (default: the shipped weights)"
        )
        calibration: str | None = Field(
            None, description="Platt-scaling JSON (default: platt.json beside the weights)"
        )
        p_min: float = Field(
            0.0, ge=0.0, le=1.0, description="report only cutouts with probability ≥ p_min"
        )
        batch_size: int = Field(256, ge=1, description="cutouts per forward pass")
        device: str = Field("auto", pattern="^(auto|cpu|cuda)$", description="auto|cpu|cuda")
        threads: int = Field(0, ge=0, description="torch CPU threads (0: leave torch's default)")
        localise: bool = Field(
            True,
            description="refine positions with centred cutouts around probable grid cutouts "
            "(off: report the grid-cutout centres, as DeepSZ)",
        )
        p_seed: float = Field(
            0.05, ge=0.0, le=1.0, description="grid-cutout probability that starts a localisation"
        )
        localise_step_arcmin: float = Field(
            1.0, gt=0, description="offset step of the centred cutouts around a seed"
        )
        localise_reach_arcmin: float = Field(
            6.0, gt=0, description="largest offset of the centred cutouts around a seed"
        )
        refine_passes: int = Field(
            1, ge=0, le=3, description="finer localisation passes around the first estimate"
        )
        merge_arcmin: float = Field(
            3.0, gt=0, description="localised candidates closer than this are merged"
        )
        localise_method: str = Field(
            "auto",
            pattern="^(auto|regression|plateau)$",
            description="auto: the position head when the weights have one, else the plateau "
            "search; regression: the head (error without one); plateau: the plateau search",
        )
        position: str | None = Field(
            None,
            description=f"position-head safetensors (default: {POSITION_FILE} beside the "
            "weights, when there is one)",
        )
        localise_iterations: int = Field(
            2, ge=0, le=10, description="re-centred cutouts per seed of the regression method"
        )

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._net()  # weights and calibration checked (and cached) before any tile is read

    # ------------------------------------------------------------------ loading
    def _net(self) -> _Loaded:
        opts = self.options
        weights = Path(opts.weights) if opts.weights else shipped_weights() / "resnet.safetensors"
        platt = Path(opts.calibration) if opts.calibration else weights.with_name("platt.json")
        if opts.threads:
            import torch

            torch.set_num_threads(int(opts.threads))
        if opts.position:
            position: Path | None = Path(opts.position)
            if not position.is_file():
                raise PluginError(f"resnet: position-head file not found: {position}")
        else:
            position = weights.with_name(POSITION_FILE)
            if opts.localise_method == "plateau" or not position.is_file():
                position = None
        key = (
            str(weights.resolve()),
            str(platt.resolve()),
            _device(opts.device),
            str(position.resolve()) if position else "",
        )
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = _Loaded(weights, platt, key[2], position)
            return _CACHE[key]

    # ------------------------------------------------------------------ checks
    def _band_order(self, tile: Tile, net: _Loaded) -> list[int]:
        """Indices of the tile bands matching the trained bands, in training order."""
        if len(tile.bands) < len(net.freqs):
            raise PluginError(
                f"resnet: needs {len(net.freqs)} bands near "
                f"{'/'.join(f'{f:g}' for f in net.freqs)} GHz, the sky has {len(tile.bands)}"
            )
        freqs = np.array([b.freq_ghz for b in tile.bands], float)
        order = []
        for f in net.freqs:
            i = int(np.argmin(np.abs(np.log(freqs / f))))
            if abs(np.log(freqs[i] / f)) > np.log(1.15) or i in order:
                raise PluginError(
                    f"resnet: no band within 15% of {f:g} GHz (the sky has "
                    f"{', '.join(f'{x:g}' for x in freqs)} GHz)"
                )
            order.append(i)
        return order

    def _check_pixels(self, tile: Tile, net: _Loaded) -> None:
        pix = tile.pixel_scale_arcmin
        if abs(pix / net.pixel_arcmin - 1.0) > 0.02:
            raise PluginError(
                f"resnet: the network was trained on {net.pixel_arcmin:g}' pixels, the sky has "
                f"{pix:.4g}' pixels; reproject the maps to {net.pixel_arcmin:g}'"
            )

    # ------------------------------------------------------------------ scoring
    @staticmethod
    def _padded(maps: np.ndarray, pad: int) -> np.ndarray:
        """``maps`` with a NaN border of ``pad`` pixels (windows may stick out of the tile)."""
        nb, ny, nx = maps.shape
        padded = np.full((nb, ny + 2 * pad, nx + 2 * pad), np.nan, np.float32)
        padded[:, pad : pad + ny, pad : pad + nx] = maps
        return padded

    @staticmethod
    def _cutouts(padded: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: int) -> np.ndarray:
        """``(n, nb, size, size)`` windows with lower-left tile pixels ``(x0, y0)``.

        ``padded`` comes from :meth:`_padded` with ``pad = size``; windows further out are
        clipped to the NaN border. The windows are read from one strided view of every
        ``size × size`` window of the map (:func:`numpy.lib.stride_tricks.sliding_window_view`,
        no copy) indexed by the window origins: one gather, no per-cutout Python.
        """
        _, pny, pnx = padded.shape
        x0 = np.clip(x0 + size, 0, pnx - size)
        y0 = np.clip(y0 + size, 0, pny - size)
        view = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))
        return np.moveaxis(view[:, y0, x0], 1, 0)

    @staticmethod
    def clamp_windows(
        tile: Tile, x0: np.ndarray, y0: np.ndarray, size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Move windows that stick out of the tile inwards, so every cutout is complete.

        The network only saw complete cutouts; a zero-filled half cutout at a map edge gets
        meaningless (often high) scores. Inside a tiling the margin keeps windows on the tile,
        so this only acts at the edges of the parent map (and for positions near them).
        """
        ny, nx = tile.shape
        if nx >= size:
            x0 = np.where((x0 >= -size) & (x0 <= nx), np.clip(x0, 0, nx - size), x0)
        if ny >= size:
            y0 = np.where((y0 >= -size) & (y0 <= ny), np.clip(y0, 0, ny - size), y0)
        return x0, y0

    def _score_windows(
        self, tile: Tile, x0: np.ndarray, y0: np.ndarray, *, offsets: bool = False
    ) -> tuple[np.ndarray, ...]:
        """Logits, probabilities and masked-pixel fractions of windows at ``(x0, y0)``.

        Windows are first moved onto the tile (:meth:`clamp_windows`). With ``offsets`` (and a
        position head) two more arrays follow: the predicted cluster offsets ``(n, 2)`` from the
        window centre in tile pixels (NaN without a head), and the window origins actually used
        ``(n, 2)`` — the features come out of the same forward pass as the logits.
        """
        import torch

        from clusterfw.plugins.finders.resnet.normalise import normalise

        net = self._net()
        self._check_pixels(tile, net)
        order = self._band_order(tile, net)
        x0, y0 = self.clamp_windows(tile, x0, y0, net.size)
        n = x0.size
        logits = np.full(n, np.nan)
        masked = np.ones(n)
        shift = np.full((n, 2), np.nan)
        head = net.position if offsets else None
        if n:
            padded = self._padded(np.asarray(tile.maps[order], dtype=np.float32), net.size)
            bs = int(self.options.batch_size)
            with torch.inference_mode():
                for i in range(0, n, bs):
                    raw = self._cutouts(padded, x0[i : i + bs], y0[i : i + bs], net.size)
                    masked[i : i + bs] = np.mean(~np.isfinite(raw).all(axis=1), axis=(1, 2))
                    x = torch.from_numpy(normalise(raw, net.scales)).to(net.device)
                    if net.device == "cpu":
                        x = x.contiguous(memory_format=torch.channels_last)
                    if head is None:
                        logits[i : i + bs] = net.model(x).float().cpu().numpy()
                    else:
                        from clusterfw.plugins.finders.resnet.position import (
                            forward_with_features,
                        )

                        lg, feats = forward_with_features(net.model, x)
                        logits[i : i + bs] = lg.float().cpu().numpy()
                        shift[i : i + bs] = head(feats).float().cpu().numpy()
            logits[masked >= 1.0] = np.nan
        prob = net.platt(logits) if n else logits.copy()
        if not offsets:
            return logits, prob, masked
        shift /= tile.pixel_scale_arcmin  # arcmin -> tile pixels
        return logits, prob, masked, shift, np.column_stack([x0, y0])

    def _grid_centres(self, tile: Tile, net: _Loaded) -> tuple[np.ndarray, np.ndarray]:
        """Tile-pixel centres of the 6'-stride cutouts, anchored to the parent map grid."""
        ny, nx = tile.shape
        half = (net.size - 1) / 2.0
        off_x = off_y = 0
        if isinstance(tile.core, PixelBoxCore):
            ra, dec = tile.pixel_to_world(np.array([0.0]), np.array([0.0]))
            px, py = tile.core.parent_wcs.world_to_pixel_values(ra, dec)
            off_x, off_y = int(np.rint(px[0])), int(np.rint(py[0]))
        s = net.stride_px
        kx = np.arange(int(np.floor((off_x - net.size) / s)), int(np.ceil((off_x + nx) / s)) + 1)
        ky = np.arange(int(np.floor((off_y - net.size) / s)), int(np.ceil((off_y + ny) / s)) + 1)
        cx = kx * s + half - off_x
        cy = ky * s + half - off_y
        cx = cx[(cx >= -0.5) & (cx < nx - 0.5)]
        cy = cy[(cy >= -0.5) & (cy < ny - 0.5)]
        yy, xx = np.meshgrid(cy, cx, indexing="ij")
        return xx.ravel(), yy.ravel()

    def find(self, tile: Tile) -> pa.Table:
        """Score the 6'-stride cutouts whose centres lie in the tile core.

        Parameters
        ----------
        tile : Tile
            Three bands near 95/150/220 GHz on 0.25' pixels.

        Returns
        -------
        pyarrow.Table
            One row per cutout centre in the core with ``score`` = calibrated probability
            ≥ ``p_min``; extra columns ``resnet_logit`` and ``resnet_masked_fraction``.
        """
        net = self._net()
        self._check_pixels(tile, net)
        xc, yc = self._grid_centres(tile, net)
        ra, dec = tile.pixel_to_world(xc, yc)
        keep = tile.in_core(ra, dec)
        xc, yc, ra, dec = xc[keep], yc[keep], ra[keep], dec[keep]
        half = (net.size - 1) / 2.0
        x0, y0 = self.clamp_windows(
            tile, np.rint(xc - half).astype(np.int64), np.rint(yc - half).astype(np.int64), net.size
        )
        # report the centre of the cutout actually scored (moved inwards at map edges)
        ra, dec = tile.pixel_to_world(x0 + half, y0 + half)
        if self.options.localise and self._use_regression(net):
            xc, yc = self._localise_regression(tile, net)
        elif self.options.localise:
            prob = self._score_windows(tile, x0, y0)[1]
            xc, yc = self._localise(tile, net, x0 + half, y0 + half, prob)
        if self.options.localise:
            ra, dec = tile.pixel_to_world(xc, yc)
            inside = tile.in_core(ra, dec)
            xc, yc, ra, dec = xc[inside], yc[inside], ra[inside], dec[inside]
            x0 = np.floor(xc - half + 0.5).astype(np.int64)
            y0 = np.floor(yc - half + 0.5).astype(np.int64)
        logits, prob, masked = self._score_windows(tile, x0, y0)
        ok = np.isfinite(prob) & (prob >= self.options.p_min)
        return candidate_table(
            finder=self.name,
            score_kind=self.score_kind,
            ra=ra[ok],
            dec=dec[ok],
            score=prob[ok],
            tile_id=tile.tile_id,
            extra={
                "resnet_logit": (
                    plugin_field("resnet_logit", pa.float32(), "",
                                 "network output before Platt scaling"),
                    logits[ok].astype(np.float32),
                ),
                "resnet_masked_fraction": (
                    plugin_field("resnet_masked_fraction", pa.float32(), "",
                                 "fraction of the cutout's pixels masked or off the map "
                                 "(set to 0 after normalisation)"),
                    masked[ok].astype(np.float32),
                ),
            },
        )  # fmt: skip

    def _localise(
        self, tile: Tile, net: _Loaded, xc: np.ndarray, yc: np.ndarray, prob: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cluster positions (tile pixels) refined from the grid cutouts; see ``localise.py``."""
        from clusterfw.plugins.finders.resnet.localise import LocaliseSettings, localise

        o = self.options
        pix = tile.pixel_scale_arcmin
        half = (net.size - 1) / 2.0
        settings = LocaliseSettings(
            p_seed=o.p_seed,
            suppress_pix=net.stride_px * 1.5,
            reach_pix=o.localise_reach_arcmin / pix,
            step_pix=o.localise_step_arcmin / pix,
            plateau=0.5,
            merge_pix=o.merge_arcmin / pix,
            refine_passes=o.refine_passes,
        )

        def centred(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            x0 = np.floor(x - half + 0.5).astype(np.int64)
            y0 = np.floor(y - half + 0.5).astype(np.int64)
            return self._score_windows(tile, x0, y0)[1]

        return localise(xc, yc, prob, centred, settings)

    def _use_regression(self, net: _Loaded) -> bool:
        method = self.options.localise_method
        if method == "regression" and net.position is None:
            raise PluginError(
                "resnet: localise_method=regression needs a position head "
                f"({POSITION_FILE} beside the weights, or -o resnet.position=FILE)"
            )
        return method != "plateau" and net.position is not None

    def _localise_regression(self, tile: Tile, net: _Loaded) -> tuple[np.ndarray, np.ndarray]:
        """Cluster positions (tile pixels) from every grid cutout of the tile, margin included
        (a core cluster may be seen best from a margin cutout); see ``localise.py``."""
        from clusterfw.plugins.finders.resnet.localise import (
            LocaliseSettings,
            localise_regression,
        )

        o = self.options
        pix = tile.pixel_scale_arcmin
        half = (net.size - 1) / 2.0
        gx, gy = self._grid_centres(tile, net)
        x0 = np.rint(gx - half).astype(np.int64)
        y0 = np.rint(gy - half).astype(np.int64)
        _, prob, _, shift, org = self._score_windows(tile, x0, y0, offsets=True)
        settings = LocaliseSettings(
            p_seed=o.p_seed,
            suppress_pix=0.0,
            reach_pix=o.localise_reach_arcmin / pix,
            step_pix=o.localise_step_arcmin / pix,
            plateau=0.5,
            merge_pix=o.merge_arcmin / pix,
            iterations=o.localise_iterations,
        )

        def centred(
            x: np.ndarray, y: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            wx = np.floor(x - half + 0.5).astype(np.int64)
            wy = np.floor(y - half + 0.5).astype(np.int64)
            _, p, _, sh, used = self._score_windows(tile, wx, wy, offsets=True)
            return p, sh, used[:, 0] + half, used[:, 1] + half

        return localise_regression(
            org[:, 0] + half, org[:, 1] + half, prob, shift, centred, settings
        )

    def score_at(self, tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Calibrated probability of a cutout centred on each position (nearest pixel).

        Within 4' of the map edge the cutout is moved inwards (it still contains the position).
        Returns NaN for positions off the tile or cutouts entirely masked.
        """
        ra = np.atleast_1d(np.asarray(ra, float))
        dec = np.atleast_1d(np.asarray(dec, float))
        net = self._net()
        x, y = tile.world_to_pixel(ra, dec)
        half = (net.size - 1) / 2.0
        # nearest cutout whose centre (x0 + 15.5) is within half a pixel of the position
        x0 = np.floor(np.nan_to_num(x, nan=-1e9) - half + 0.5).astype(np.int64)
        y0 = np.floor(np.nan_to_num(y, nan=-1e9) - half + 0.5).astype(np.int64)
        _, prob, _ = self._score_windows(tile, x0, y0)
        ny, nx = tile.shape
        outside = ~((x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5))
        prob[outside] = np.nan
        return prob
