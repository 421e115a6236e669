"""The DeepSZ classifier (Lin et al. 2021, Fig. 3): a ResNet-50 cut down for 32 × 32 cutouts.

Differences from torchvision's ResNet-50, as in the paper (§2.2.1):

1. the 7 × 7 stride-2 stem is replaced by two 3 × 3 convolutions (stride 1, then 2), each
   followed by batch normalisation and ReLU, then a 3 × 3 max-pool of stride 2;
2. the three bottleneck stages keep ResNet-50's depths (3, 4, 6 blocks) and widths
   (bottleneck 64/128/256, output 256/512/1024), built from ResNet-50's bottleneck block
   (:class:`Bottleneck`: torchvision's :class:`~torchvision.models.resnet.Bottleneck`, v1.5,
   written out here with the same layers, parameter names and forward — a test checks it
   against torchvision's — because importing torchvision pulls in ``torch._dynamo`` and
   doubles the start-up time of ``clusterfw run --finder resnet``);
3. the fourth stage is dropped; the stage-3 feature map (1024 × 2 × 2 for a 32-pixel input) is
   flattened — keeping *where* in the cutout the signal is, which matters because a cutout is
   positive only when the halo lies in its central 6' × 6' — and fed to two fully connected
   layers of 256 with ReLU and one logit (equivalent to the paper's two-class softmax).

This module imports torch at import time; import it only inside methods of the finder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Bottleneck(nn.Module):
    """ResNet-50's bottleneck block, as torchvision's (v1.5: the stride on the 3 × 3).

    ``1×1 (planes) → 3×3 (planes, stride) → 1×1 (4 planes)``, each convolution without bias and
    followed by batch norm, ReLU after the first two and after the residual sum; ``downsample``
    (or the identity) on the shortcut. Same attribute names as
    :class:`torchvision.models.resnet.Bottleneck`, so state dicts are interchangeable.
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class DeepSZResNet(nn.Module):
    """The DeepSZ ResNet classifier; ``forward`` returns one logit per cutout.

    Parameters
    ----------
    in_channels : int
        Number of bands (3).
    size : int
        Cutout side in pixels (32); fixes the flattened feature size.
    width : int
        Stem width and stage-1 bottleneck width (64 in the paper); the stages use
        ``width``, ``2 width``, ``4 width`` (× 4 expansion at their outputs).
    blocks : sequence of int
        Bottleneck blocks per stage (3, 4, 6 in the paper).
    fc : int
        Width of the two fully connected layers (256).
    """

    def __init__(
        self,
        in_channels: int = 3,
        size: int = 32,
        width: int = 64,
        blocks: Sequence[int] = (3, 4, 6),
        fc: int = 256,
    ) -> None:
        super().__init__()
        self.config = {
            "in_channels": int(in_channels),
            "size": int(size),
            "width": int(width),
            "blocks": [int(b) for b in blocks],
            "fc": int(fc),
        }
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        inplanes = width
        for i, n_blocks in enumerate(blocks):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            stage, inplanes = _stage(inplanes, planes, n_blocks, stride)
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        side = size // 4
        for _ in range(len(blocks) - 1):
            side = (side + 1) // 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(inplanes * side * side, fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # zero-init the last BN of each residual branch: every block starts as the identity
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n,)`` of normalised cutouts ``(n, in_channels, size, size)``."""
        return self.head(self.stages(self.stem(x))).squeeze(1)


def _stage(inplanes: int, planes: int, n_blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
        )
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(out, planes) for _ in range(n_blocks - 1)]
    return nn.Sequential(*layers), out


def fold_batchnorm(model: DeepSZResNet) -> DeepSZResNet:
    """An inference copy of ``model`` with every batch norm folded into its convolution.

    In eval mode a batch norm is an affine map per channel, so ``bn(conv(x))`` equals one
    convolution with scaled weights and a bias (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`);
    the batch norms become :class:`~torch.nn.Identity`. Same logits to float rounding, one pass
    over each activation map fewer. The copy is in eval mode; ``model`` is not changed.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()

    def fold(seq: nn.Sequential, conv: int, bn: int) -> None:
        seq[conv] = fuse_conv_bn_eval(seq[conv], seq[bn])
        seq[bn] = nn.Identity()

    with torch.no_grad():
        fold(fused.stem, 0, 1)
        fold(fused.stem, 3, 4)
        for m in fused.modules():
            if isinstance(m, Bottleneck):
                for i in (1, 2, 3):
                    setattr(
                        m,
                        f"conv{i}",
                        fuse_conv_bn_eval(getattr(m, f"conv{i}"), getattr(m, f"bn{i}")),
                    )
                    setattr(m, f"bn{i}", nn.Identity())
                if m.downsample is not None:
                    fold(m.downsample, 0, 1)
    return fused


def forward_flops(model: DeepSZResNet) -> float:
    """Multiply-adds × 2 of one forward pass for one cutout (convolutions and linear layers)."""
    total = 0.0
    hooks = []

    def conv_hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2.0 * k * out[0].numel()
        elif isinstance(mod, nn.Linear):
            total += 2.0 * mod.in_features * mod.out_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            hooks.append(m.register_forward_hook(conv_hook))
    size = model.config["size"]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, model.config["in_channels"], size, size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def save_weights(model: DeepSZResNet, path: str, metadata: dict[str, object]) -> None:
    """Write the weights as safetensors (float16, batch-norm statistics float32) atomically.

    ``metadata`` (JSON-able) is stored with the model ``config`` in the safetensors header.
    """
    import json

    from safetensors.torch import save_file

    from clusterfw.core.atomic import write_atomic

    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        if t.is_floating_point() and "running_" not in name:
            t = t.to(torch.float16)
        tensors[name] = t
    meta = {"config": json.dumps(model.config), "clusterfw": json.dumps(metadata)}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


#: Bounds on a weights file's model config, checked before the model is built (a hostile or
#: corrupt config must not allocate without limit).
CONFIG_BOUNDS = {"in_channels": (1, 16), "size": (8, 256), "width": (1, 512), "fc": (1, 8192)}


def _check_config(path: str, config: object) -> dict:
    from clusterfw.core.errors import InputError

    if not isinstance(config, dict) or set(config) - {*CONFIG_BOUNDS, "blocks"}:
        raise InputError(path, f"model config is not a DeepSZResNet config ({config!r:.80})")
    for key, (lo, hi) in CONFIG_BOUNDS.items():
        v = config.get(key)
        if v is not None and not (type(v) is int and lo <= v <= hi):
            raise InputError(path, f"model config {key}={v!r} is not an integer in {lo}..{hi}")
    blocks = config.get("blocks", [3, 4, 6])
    if not (
        isinstance(blocks, list)
        and len(blocks) == 3
        and all(type(b) is int and 1 <= b <= 64 for b in blocks)
    ):
        raise InputError(path, f"model config blocks={blocks!r} is not three integers in 1..64")
    return config


def _check_metadata(path: str, meta: object, config: dict) -> dict:
    """The clusterfw metadata must give finite, positive normalisation scales (one per band)."""
    from clusterfw.core.errors import InputError

    if not isinstance(meta, dict):
        raise InputError(path, "clusterfw metadata is not a JSON object")
    n_band = int(config.get("in_channels", 3))
    for key, n in (("scales_uk", n_band), ("freq_ghz", n_band)):
        values = meta.get(key)
        if values is None and key == "freq_ghz":
            continue
        if not (
            isinstance(values, list)
            and len(values) == n
            and all(type(v) in (int, float) and 0 < v < float("inf") for v in values)
        ):
            raise InputError(path, f"metadata {key}={values!r} is not {n} finite positive numbers")
    for key in ("pixel_arcmin", "stride_arcmin"):
        v = meta.get(key)
        if v is not None and not (type(v) in (int, float) and 0 < v < float("inf")):
            raise InputError(path, f"metadata {key}={v!r} is not a finite positive number")
    if meta.get("cutout_size", config.get("size", 32)) != config.get("size", 32):
        raise InputError(
            path,
            f"metadata cutout_size={meta.get('cutout_size')!r} differs from the model's size "
            f"{config.get('size', 32)}",
        )
    return meta


def load_weights(path: str, device: str = "cpu") -> tuple[DeepSZResNet, dict[str, object]]:
    """Read weights written by :func:`save_weights` (safetensors: no pickle).

    Everything is checked before the tensors are loaded: the file must be a complete
    safetensors file, its metadata valid JSON with a bounded model config and the clusterfw
    metadata (``scales_uk`` ...), and its tensor names and shapes exactly those of the model.

    Returns
    -------
    model : DeepSZResNet
        In eval mode, float32, on ``device``.
    metadata : dict

    Raises
    ------
    InputError
        Naming ``path`` and the first problem found.
    """
    import json

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
    meta = _check_metadata(path, meta, config)
    model = DeepSZResNet(**config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
        raise InputError(path, f"tensors do not match the model: {', '.join(parts)}")
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
