"""Position regression head of the ``resnet`` finder: where in a cutout the cluster is.

The classifier says whether a qualifying cluster lies in a cutout's central 6' × 6' box, not
where; its grid-cutout centres can be 3'+ from the cluster. This head reads the *frozen*
classifier's own feature maps — stage 2 (``8w × 4 × 4``) and stage 3 (``16w × 2 × 2``),
flattened and concatenated — and regresses the offset ``(dx, dy)`` (arcmin, along the
cutout's x = column and y = row axes) of the cluster from the cutout centre:
``Linear(n_features, hidden) → ReLU → Linear(hidden, 2)``.

Because the trunk is frozen, the classifier's logits (and hence every probability and the
Platt calibration) are unchanged, the head costs nothing at inference (the features come out of
the forward pass that scores the cutout: :func:`forward_with_features`), and training it is a
few minutes on one core: the features of the training positives (each in several dihedral
orientations, whose offsets transform with them) are computed once, then the head is fitted
with Adam on a Huber loss. Training data: the ``balanced`` training split of
``clusterfw train resnet`` (positives at a uniformly random offset inside the central box);
model selection on the positives of the natural-ratio validation split.

Stored as ``position.safetensors`` beside the classifier's weights (float32; header metadata
``config`` and ``clusterfw``: features, unit, metrics, seed). The finder uses it when present
(:mod:`clusterfw.plugins.finders.resnet.localise`); this module imports torch at import time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clusterfw.plugins.finders.resnet.model import DeepSZResNet

POSITION_FILE = "position.safetensors"
#: The eight dihedral transforms as (flip x, flip y, transpose): applied in that order to the
#: image (axes ``(..., y, x)``), the offset follows (see :func:`dihedral`).
DIHEDRAL = [(fx, fy, t) for t in (False, True) for fy in (False, True) for fx in (False, True)]


class PositionHead(nn.Module):
    """MLP from flattened trunk features to the cluster's offset ``(dx, dy)`` in arcmin.

    Parameters
    ----------
    in_features : int
        Length of the feature vector of :func:`forward_with_features`.
    hidden : int
        Width of the hidden layer.
    """

    def __init__(self, in_features: int, hidden: int = 256) -> None:
        super().__init__()
        self.config = {"in_features": int(in_features), "hidden": int(hidden)}
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Offsets ``(n, 2)`` = ``(dx, dy)`` arcmin of features ``(n, in_features)``."""
        return self.net(features)


def forward_with_features(
    model: DeepSZResNet, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(n,)`` and position features ``(n, n_features)`` in one forward pass.

    The features are the stage-2 and stage-3 maps, flattened (channel-major, as
    :class:`torch.nn.Flatten` of a contiguous tensor) and concatenated. The logits equal
    ``model(x)``.
    """
    h = model.stem(x)
    stages = list(model.stages)
    for stage in stages[:-2]:
        h = stage(h)
    s2 = stages[-2](h)
    s3 = stages[-1](s2)
    logits = model.head(s3).squeeze(1)
    feats = torch.cat([s2.contiguous().flatten(1), s3.contiguous().flatten(1)], dim=1)
    return logits, feats


def n_features(model: DeepSZResNet) -> int:
    """Length of the feature vector of :func:`forward_with_features` for ``model``."""
    size = model.config["size"]
    with torch.inference_mode():
        was = model.training
        model.eval()
        try:
            _, f = forward_with_features(
                model, torch.zeros(1, model.config["in_channels"], size, size)
            )
        finally:
            model.train(was)
    return int(f.shape[1])


def dihedral(
    images: np.ndarray, dx: np.ndarray, dy: np.ndarray, fx: bool, fy: bool, t: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply a dihedral transform to ``(n, c, h, w)`` images and to the offsets with them.

    Flipping x negates ``dx``, flipping y negates ``dy``, transposing swaps them (cutouts of
    even side have their centre between pixels, so the flips are exact about it).
    """
    if fx:
        images, dx = images[..., ::-1], -dx
    if fy:
        images, dy = images[..., ::-1, :], -dy
    if t:
        images, dx, dy = np.swapaxes(images, -1, -2), dy, dx
    return np.ascontiguousarray(images), dx, dy


def extract_features(
    model: DeepSZResNet, x: np.ndarray, batch: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and position features (float32) of normalised cutouts ``x``, batched."""
    model.eval()
    logits, feats = [], []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))
            lg, f = forward_with_features(model, xb.contiguous(memory_format=torch.channels_last))
            logits.append(lg.float().numpy())
            feats.append(f.float().numpy())
    if not feats:
        return np.zeros(0, np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(logits), np.concatenate(feats)


def position_errors(pred: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> dict[str, float]:
    """Median, 90th percentile and fraction beyond 1' of the radial error (arcmin)."""
    err = np.hypot(pred[:, 0] - dx, pred[:, 1] - dy)
    if err.size == 0:
        return {"n": 0, "median": float("nan"), "p90": float("nan"), "frac_gt_1": float("nan")}
    return {
        "n": int(err.size),
        "median": float(np.median(err)),
        "p90": float(np.percentile(err, 90)),
        "frac_gt_1": float(np.mean(err > 1.0)),
    }


def fit_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    *,
    hidden: int = 256,
    epochs: int = 30,
    batch: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 1,
    log: Callable[..., None] | None = None,
) -> tuple[PositionHead, dict[str, Any], np.ndarray, np.ndarray]:
    """Fit a :class:`PositionHead` on features ``train_x`` → offsets ``train_y`` (arcmin).

    Adam with a cosine learning-rate decay, Huber loss (δ = 0.5'); features standardised (the
    standardisation is folded into the first layer afterwards, so the stored head takes raw
    features). The epoch with the lowest median validation error is kept.

    Returns
    -------
    head : PositionHead
        In eval mode, on raw features.
    metrics : dict
        Validation errors of the kept epoch (:func:`position_errors`) and its index.
    mean, scale : ndarray
        The standardisation that was folded in (for the record).
    """
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    mean = train_x.mean(axis=0)
    scale = train_x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
    xt = torch.from_numpy((train_x - mean) / scale)
    yt = torch.from_numpy(train_y.astype(np.float32))
    xv = torch.from_numpy(((val_x - mean) / scale).astype(np.float32))
    head = PositionHead(train_x.shape[1], hidden)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    n = xt.shape[0]
    steps = epochs * max(1, n // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.HuberLoss(delta=0.5)
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, float]] | None = None
    for epoch in range(epochs):
        head.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n - batch + 1, batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            loss = loss_fn(head(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
        head.eval()
        with torch.inference_mode():
            pv = head(xv).numpy()
        m = position_errors(pv, val_y[:, 0], val_y[:, 1])
        if log is not None:
            log(
                event="epoch",
                epoch=epoch,
                train_loss=total / n,
                **{f"val_{k}": v for k, v in m.items()},
            )
        if best is None or m["median"] < best[0]:
            state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            best = (m["median"], epoch, state, m)
    assert best is not None
    head.load_state_dict(best[2])
    head.eval()
    # fold the standardisation into the first layer: W (x - mu) / s + b
    with torch.no_grad():
        first = head.net[0]
        s = torch.from_numpy(scale.astype(np.float32))
        mu = torch.from_numpy(mean.astype(np.float32))
        w = first.weight / s[None, :]
        first.bias.copy_(first.bias - w @ mu)
        first.weight.copy_(w)
    return head, {**best[3], "epoch": best[1]}, mean, scale


def save_head(head: PositionHead, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write the head as safetensors (float32) atomically, with its config and ``metadata``."""
    from safetensors.torch import save_file

    from clusterfw.core.atomic import write_atomic

    tensors = {k: v.detach().cpu().contiguous().float() for k, v in head.state_dict().items()}
    meta = {"config": json.dumps(head.config), "clusterfw": json.dumps(metadata)}
    write_atomic(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_head(path: str | Path, expected_features: int) -> tuple[PositionHead, dict[str, Any]]:
    """Read a head written by :func:`save_head` (safetensors: no pickle), checked first.

    Raises
    ------
    clusterfw.core.errors.InputError
        Naming ``path`` and the first problem (unreadable, bad config, wrong tensor shapes,
        non-finite values, or a feature length that is not the classifier's).
    """
    from safetensors.torch import load_file

    from clusterfw.core.errors import InputError
    from clusterfw.core.weights_io import read_safetensors_header

    path = str(path)
    header, shapes = read_safetensors_header(path)
    try:
        config = json.loads(header.get("config", "null"))
        meta = json.loads(header.get("clusterfw", "{}"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"safetensors metadata is not valid JSON ({exc.msg})") from None
    if not (
        isinstance(config, dict)
        and set(config) == {"in_features", "hidden"}
        and all(type(v) is int and 1 <= v <= 1_000_000 for v in config.values())
    ):
        raise InputError(path, f"not a position-head config ({config!r:.80})")
    if config["in_features"] != expected_features:
        raise InputError(
            path,
            f"position head takes {config['in_features']} features, the classifier gives "
            f"{expected_features}",
        )
    head = PositionHead(**config)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    if shapes != expected:
        raise InputError(path, "tensors do not match the position head")
    state = load_file(path)
    for key, value in state.items():
        if not bool(torch.isfinite(value).all()):
            raise InputError(path, f"tensor {key!r} holds non-finite values")
    head.load_state_dict({k: v.float() for k, v in state.items()})
    head.eval()
    return head, meta if isinstance(meta, dict) else {}


def _positives(folder: Path, max_n: int | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Positive cutouts of a cached split with their offsets (arcmin)."""
    from clusterfw.plugins.finders.resnet.data import load_split

    data = load_split(folder)
    pos = np.flatnonzero(data.labels == 1)
    if max_n is not None and pos.size > max_n:
        pos = np.sort(rng.choice(pos, max_n, replace=False))
    return {
        "images": data.images[pos],
        "dx": data.meta["halo_dx_arcmin"][pos].astype(np.float32),
        "dy": data.meta["halo_dy_arcmin"][pos].astype(np.float32),
    }


def train_position(
    weights: Path,
    data_dir: Path,
    out: Path,
    *,
    seed: int = 1,
    variants: int = 3,
    hidden: int = 256,
    epochs: int = 30,
    max_train: int | None = None,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the position head of the classifier ``weights`` on the cached cutouts.

    Parameters
    ----------
    weights : Path
        The classifier (``resnet.safetensors``); frozen.
    data_dir : Path
        Cutout cache of ``clusterfw train resnet`` (``train``, ``val``, ``test`` folders).
    out : Path
        Folder for ``position.safetensors`` and ``position_metrics.jsonl``.
    seed : int
        Seeds the dihedral variants and the fit.
    variants : int
        Dihedral orientations per training positive (distinct, random).
    hidden, epochs : int
        Head width and training epochs.
    max_train : int or None
        Use at most this many training positives.
    threads : int
        torch CPU threads.

    Returns
    -------
    dict
        Summary: validation and test errors of the head (single pass, cutouts centred on the
        grid), the epoch kept and the timings.
    """
    import sys

    from clusterfw.plugins.finders.resnet.model import load_weights
    from clusterfw.plugins.finders.resnet.normalise import normalise

    t0 = time.perf_counter()
    torch.set_num_threads(int(threads))
    rng = np.random.default_rng(seed)
    model, meta = load_weights(str(weights), "cpu")
    model = model.to(memory_format=torch.channels_last)
    scales = np.asarray(meta["scales_uk"], float)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "position_metrics.jsonl"
    log_fh = open(log_path, "w")  # noqa: SIM115 (closed below)

    def log(**rec: Any) -> None:
        log_fh.write(json.dumps(rec) + "\n")
        log_fh.flush()
        if progress:
            print(json.dumps(rec), file=sys.stderr)

    def features_of(split: str, max_n: int | None, n_var: int) -> tuple[np.ndarray, np.ndarray]:
        d = _positives(data_dir / split, max_n, rng)
        xs, ys = [], []
        picks = (
            np.stack([rng.permutation(8)[:n_var] for _ in range(d["images"].shape[0])])
            if n_var > 1
            else np.zeros((d["images"].shape[0], 1), int)
        )
        norm = normalise(d["images"], scales)
        for k, (fx, fy, t) in enumerate(DIHEDRAL):
            sel = np.flatnonzero((picks == k).any(axis=1))
            if sel.size == 0:
                continue
            img, dx, dy = dihedral(norm[sel], d["dx"][sel], d["dy"][sel], fx, fy, t)
            _, f = extract_features(model, img)
            xs.append(f)
            ys.append(np.column_stack([dx, dy]))
            log(event="features", split=split, transform=k, n=int(sel.size),
                seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
        return np.concatenate(xs), np.concatenate(ys).astype(np.float32)

    log(
        event="config", weights=str(weights), data_dir=str(data_dir), seed=seed,
        variants=variants, hidden=hidden, epochs=epochs, max_train=max_train, threads=threads,
    )  # fmt: skip
    tx, ty = features_of("train", max_train, variants)
    vx, vy = features_of("val", None, 1)
    t_feat = time.perf_counter() - t0
    head, metrics, _, _ = fit_head(tx, ty, vx, vy, hidden=hidden, epochs=epochs, seed=seed, log=log)
    sx, sy = features_of("test", None, 1)
    with torch.inference_mode():
        test = position_errors(head(torch.from_numpy(sx)).numpy(), sy[:, 0], sy[:, 1])
        val = position_errors(head(torch.from_numpy(vx)).numpy(), vy[:, 0], vy[:, 1])
    # what the grid centre alone would give (offset 0): the error the head removes
    baseline = position_errors(np.zeros_like(sy), sy[:, 0], sy[:, 1])
    summary = {
        "weights": str(weights),
        "seed": seed,
        "n_train": int(tx.shape[0]),
        "n_val": int(vx.shape[0]),
        "n_test": int(sx.shape[0]),
        "val": val,
        "test": test,
        "test_grid_centre": baseline,
        "epoch": metrics["epoch"],
        "feature_seconds": round(t_feat, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
    }
    save_head(
        head,
        out / POSITION_FILE,
        {
            "unit": "arcmin",
            "features": "stage2+stage3 flattened",
            "classifier": weights.name,
            "summary": summary,
        },  # fmt: skip
    )
    log(event="final", **summary)
    log_fh.close()
    (out / "position_summary.json").write_text(json.dumps(summary, indent=1))
    return summary
