"""The ``frcnn`` network: torchvision's Faster R-CNN on a small convolutional trunk.

Deep-CEE (Chan & Stott 2019) used a COCO-pretrained Inception-v2 trunk. Nothing can be
downloaded here and the model must train from scratch on two shared CPU cores, so the trunk is
a plain VGG-like stack of 3×3 convolutions with GroupNorm (batch-size independent: the detector
sees 2–4 images per step), four stride-2 stages to a single stride-16 feature map of
``width × 8`` channels (~0.08 GMAC per 160² window at ``width = 16``). torchvision's
:class:`~torchvision.models.detection.FasterRCNN` supplies the region proposal network, RoI-Align
and the detection head (two 256-unit fully connected layers, two classes: background and
cluster).

Anchors follow the paper's idea (scales and ratios covering the ground-truth boxes) at our
working scale of 4.208" per pixel: sizes 24, 48, 96 and 160 pixels (1.7'–11') with aspect
ratios 0.5, 1 and 2 (boxes of clusters near a window edge are clipped, hence the non-square
ratios).

The image transform of torchvision is neutralised (``image_mean = 0``, ``image_std = 1``,
``min_size = max_size = window``): windows are already stretched (:mod:`.prep`) and never resized.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

#: Bounds on a weights file's model config, checked before anything is built.
CONFIG_BOUNDS = {"width": (4, 128), "window": (32, 1024), "head": (16, 2048)}
ANCHOR_SIZES = (24, 48, 96, 160)
ASPECT_RATIOS = (0.5, 1.0, 2.0)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
    )


class Trunk(nn.Module):
    """Feature network: 3 → w (s2) → 2w (s2) ×2 → 4w (s2) ×2 → 8w (s2) ×2, stride 16."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _block(3, w, 2),
            _block(w, 2 * w, 2),
            _block(2 * w, 2 * w, 1),
            _block(2 * w, 4 * w, 2),
            _block(4 * w, 4 * w, 1),
            _block(4 * w, 8 * w, 2),
            _block(8 * w, 8 * w, 1),
        )
        self.out_channels = 8 * w

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """A single feature map named ``"0"`` (what the RPN and RoI-Align read)."""
        return {"0": self.body(x)}


def build_model(width: int = 16, window: int = 160, head: int = 256) -> nn.Module:
    """A Faster R-CNN with randomly initialised weights (nothing is downloaded).

    Parameters
    ----------
    width : int
        Channels of the trunk's first stage (the last has ``8 × width``).
    window : int
        Side of the square input windows, pixels (the transform never resizes).
    head : int
        Units of the two fully connected layers of the detection head.

    Returns
    -------
    torchvision.models.detection.FasterRCNN
        With ``model.config`` = the arguments (stored in the weights file).
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.rpn import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    trunk = Trunk(width)
    anchors = AnchorGenerator(sizes=(ANCHOR_SIZES,), aspect_ratios=(ASPECT_RATIOS,))
    roi = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    model = FasterRCNN(
        trunk,
        num_classes=None,
        min_size=window,
        max_size=window,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=anchors,
        box_roi_pool=roi,
        box_head=TwoMLPHead(trunk.out_channels * 7 * 7, head),
        box_predictor=FastRCNNPredictor(head, 2),
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_batch_size_per_image=64,
        box_positive_fraction=0.25,
        box_score_thresh=0.01,
        box_nms_thresh=0.3,
        box_detections_per_img=30,
    )
    model.config = {"width": int(width), "window": int(window), "head": int(head)}
    return model


def save_weights(model: nn.Module, path: str, metadata: dict[str, Any]) -> None:
    """Write the weights as safetensors (float16 weights, no pickle) atomically.

    ``metadata`` (JSON-able: pixel scale, stretch, thresholds ...) is stored with the model
    ``config`` in the safetensors header.
    """
    from safetensors.torch import save_file

    from clusterfw.core.atomic import write_atomic

    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        if t.is_floating_point():
            t = t.to(torch.float16)
        tensors[name] = t
    meta = {"config": json.dumps(model.config), "clusterfw": json.dumps(metadata)}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _check_config(path: str, config: object) -> dict[str, int]:
    from clusterfw.core.errors import InputError

    if not isinstance(config, dict) or set(config) != set(CONFIG_BOUNDS):
        raise InputError(path, f"model config is not an frcnn config ({config!r:.80})")
    for key, (lo, hi) in CONFIG_BOUNDS.items():
        v = config[key]
        if not (type(v) is int and lo <= v <= hi):
            raise InputError(path, f"model config {key}={v!r} is not an integer in {lo}..{hi}")
    return config


def _check_metadata(path: str, meta: object) -> dict[str, Any]:
    from clusterfw.core.errors import InputError

    if not isinstance(meta, dict):
        raise InputError(path, "clusterfw metadata is not a JSON object")
    for key in ("pixel_arcsec", "soft_nmgy"):
        v = meta.get(key)
        if not (type(v) in (int, float) and 0 < v < float("inf")):
            raise InputError(path, f"metadata {key}={v!r} is not a finite positive number")
    bands = meta.get("bands")
    if bands != ["g", "r", "i"]:
        raise InputError(path, f"metadata bands={bands!r}, expected ['g', 'r', 'i']")
    return meta


def load_weights(path: str, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Read weights written by :func:`save_weights` (safetensors: no pickle).

    The header (config, metadata), the tensor names and shapes are checked before any tensor
    is loaded.

    Returns
    -------
    model : FasterRCNN
        In eval mode, float32, on ``device``.
    metadata : dict

    Raises
    ------
    InputError
        Naming ``path`` and the first problem found.
    """
    from safetensors.torch import load_file

    from clusterfw.core.errors import InputError
    from clusterfw.core.weights_io import read_safetensors_header

    path = str(path)
    header, shapes = read_safetensors_header(path)
    if "config" not in header:
        raise InputError(path, "no model config in the safetensors metadata")
    try:
        config = json.loads(header["config"])
        meta = json.loads(header.get("clusterfw", "{}"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"safetensors metadata is not valid JSON ({exc.msg})") from None
    config = _check_config(path, config)
    meta = _check_metadata(path, meta)
    model = build_model(**config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if set(expected) != set(shapes):
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        first = (missing or extra)[0]
        raise InputError(
            path,
            f"tensors do not match the model: {len(missing)} missing, {len(extra)} unexpected "
            f"(first {first!r})",
        )
    for key, shape in expected.items():
        if shapes[key] != shape:
            raise InputError(
                path, f"tensor {key!r} has shape {list(shapes[key])}, the model needs {list(shape)}"
            )
    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise InputError(path, f"unreadable tensors ({exc})") from None
    state = {}
    for key, value in tensors.items():
        value = value.float() if value.is_floating_point() else value
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InputError(path, f"tensor {key!r} holds non-finite values")
        state[key] = value
    model.load_state_dict(state)
    model.eval().to(device)
    return model, meta
