"""Kosiba's custom CNN (Table 3), in torch.

Six stages of a 3×3 convolution (stride 1, 'same' padding, ReLU) and a 2×2 max-pool (stride 2,
ceil mode: 89 → 45 as in the table), 64 filters in the first stage and 32 in the others, then
flatten, dense 256 (ReLU), dropout 0.65 and a dense layer of 2 (softmax in the loss). Kosiba's
input is 356×356×3; ours is ``C × 32 × 32`` (C = 2 X-ray, 3 optical or 5 both), so the six pools
end at 1 × 1 × 32 (his: 6 × 6 × 32).

torch was chosen over Keras because the finder stack already runs torch (the ``resnet``
finder), one-thread CPU training and inference are fast and deterministic in torch, and
safetensors stores torch weights without pickle.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from clusterfw.plugins.finders.xray.preprocess import MODES


class KosibaCNN(nn.Module):
    """Kosiba's Table 3 network.

    Parameters
    ----------
    in_channels : int
        Input channels.
    size : int
        Input side in pixels.
    filters : tuple of int
        Filters of the six convolution stages.
    dense : int
        Width of the hidden dense layer.
    dropout : float
        Dropout before the output layer.
    """

    def __init__(
        self,
        in_channels: int,
        size: int = 32,
        filters: tuple[int, ...] = (64, 32, 32, 32, 32, 32),
        dense: int = 256,
        dropout: float = 0.65,
    ) -> None:
        super().__init__()
        self.config = {
            "in_channels": int(in_channels),
            "size": int(size),
            "filters": [int(f) for f in filters],
            "dense": int(dense),
            "dropout": float(dropout),
        }
        layers: list[nn.Module] = []
        c, s = in_channels, size
        for f in filters:
            layers += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            c, s = f, -(-s // 2)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * s * s, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, 2),
        )
        for m in self.modules():  # He initialisation: a six-stage ReLU stack trains from step one
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 2)`` class logits (not cluster, cluster)."""
        return self.head(self.features(x))


def logit(out: torch.Tensor) -> torch.Tensor:
    """``log p(cluster) − log p(not)``: the one-number score Platt scaling calibrates."""
    return out[:, 1] - out[:, 0]


def save_weights(model: KosibaCNN, path: str, metadata: dict[str, Any]) -> None:
    """Write float32 weights as safetensors, atomically; ``metadata`` JSON in the header."""
    from safetensors.torch import save_file

    from clusterfw.core.atomic import write_atomic

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.config), "clusterfw": json.dumps(metadata)}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_weights(path: str, device: str = "cpu") -> tuple[KosibaCNN, dict[str, Any]]:
    """Read weights written by :func:`save_weights` (safetensors: no pickle).

    Raises
    ------
    clusterfw.core.errors.InputError
        Naming ``path``: unreadable, no or bad metadata, tensors that do not match the model.
    """
    import math

    from safetensors.torch import load_file

    from clusterfw.core.errors import InputError
    from clusterfw.core.weights_io import read_safetensors_header

    path = str(path)
    header, _ = read_safetensors_header(path)
    try:
        config = json.loads(header["config"])
        meta = json.loads(header.get("clusterfw", "{}"))
    except (KeyError, json.JSONDecodeError):
        raise InputError(path, "no valid model config in the safetensors metadata") from None
    if meta.get("mode") not in MODES or MODES[meta["mode"]] != config.get("in_channels"):
        raise InputError(path, f"metadata mode {meta.get('mode')!r} does not match the model")
    scales = meta.get("optical_scales")
    if meta["mode"] != "xray" and (
        not isinstance(scales, list)
        or len(scales) != 3
        or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in scales)
    ):
        raise InputError(path, f"metadata optical_scales={scales!r} is not 3 positive numbers")
    try:
        model = KosibaCNN(
            config["in_channels"],
            config["size"],
            tuple(config["filters"]),
            config["dense"],
            config["dropout"],
        )
        state = load_file(path)
        model.load_state_dict(state)
    except Exception as exc:  # bad config types, missing/unexpected tensors, wrong shapes
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(path, f"tensors do not match the model ({reason})") from None
    model.eval().to(device)
    return model, meta
