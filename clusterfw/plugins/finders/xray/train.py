"""``clusterfw train xray``: Kosiba's three networks (X-ray only, optical only, both).

Data (:mod:`clusterfw.plugins.finders.xray.data`): detected candidates of simulated 0.5°
X-ray fields with their optical sky; the train, validation and test splits are disjoint skies
(seeds ``3·seed + 1``, ``+ 2``, ``+ 3``): every candidate of a field stays in its split.

Training (Kosiba Table 4, scaled to a shared CPU): SGD with Nesterov momentum 0.9, batch
``batch_size``, initial learning rate ``lr`` with Kosiba's plateau schedule (× 0.75 when the
validation loss has not improved for ``plateau_patience`` epochs), cross-entropy on the two
softmax outputs, dropout 0.65. Each epoch takes every positive and as many negatives drawn
afresh (balanced classes, as Kosiba's 85 + 85). Augmentation (``augment``): random shifts of
up to ±4 pixels (±32"), the eight flips/90° rotations, Poisson thinning of the X-ray counts
(binomial with p ∈ [0.35, 1], background × p: a shallower exposure) and extra optical sky
noise (0–1.5 × the band's robust σ), each half of the time. The checkpoint with the best
validation AUC is kept; its logits are Platt-scaled on the validation candidates.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clusterfw.plugins.finders.xray import data as xdata
from clusterfw.plugins.finders.xray.preprocess import network_input, robust_scales

CROP = (xdata.STORE_PIX - xdata.NET_PIX) // 2
VAL_MONITOR = 2000


@dataclass
class TrainConfig:
    """Options of :func:`train` (see the module docstring)."""

    out: Path
    seed: int = 0
    data_dir: Path | None = None
    train_fields: str = "0-16"
    val_fields: str = "0-8"
    test_fields: str = "0-8"
    chunk_fields: int = 4
    draws: int = 1
    abundance_boost: float = xdata.ABUNDANCE_BOOST
    label: str = "real"
    modes: tuple[str, ...] = ("xray", "optical", "both")
    epochs: int = 30
    epoch_size: int = 0
    max_minutes: float = 0.0
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    plateau_patience: int = 3
    plateau_factor: float = 0.75
    augment: bool = True
    optimizer: str = "adamw"
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def parse_fields(spec: str) -> list[range]:
    """``"0-8,16-24"`` → ``[range(0, 8), range(16, 24)]`` (half-open field ranges)."""
    from clusterfw.core.errors import ClusterfwError

    out = []
    for part in str(spec).split(","):
        try:
            a, b = (int(v) for v in part.split("-"))
        except ValueError:
            raise ClusterfwError(f"fields: expected ranges like 0-16,24-32, got {spec!r}") from None
        if not 0 <= a < b:
            raise ClusterfwError(f"fields: empty or negative range {part!r}")
        out.append(range(a, b))
    return out


def split_paths(cfg: TrainConfig, split: str, progress: bool = False) -> list[Path]:
    """Simulate (or reuse) the candidate files of a split; returns their paths."""
    offset = {"train": 1, "val": 2, "test": 3}[split]
    spec = {"train": cfg.train_fields, "val": cfg.val_fields, "test": cfg.test_fields}[split]
    seed = 3 * cfg.seed + offset
    data_dir = cfg.data_dir or cfg.out / "data"
    paths = []
    for rng_ in parse_fields(spec):
        for a in range(rng_.start, rng_.stop, cfg.chunk_fields):
            chunk = range(a, min(a + cfg.chunk_fields, rng_.stop))
            paths.append(
                xdata.simulate_split(data_dir, seed, chunk, 0.5, cfg.draws, cfg.abundance_boost)
            )
            if progress:
                print(f"data {split}: fields {chunk.start}-{chunk.stop - 1}", flush=True)
    return paths


def augment_batch(
    d: dict[str, np.ndarray],
    idx: np.ndarray,
    rng: np.random.Generator,
    on: bool,
    scales: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cropped (and, when ``on``, augmented) counts, background and optical of ``idx``."""
    n = idx.size
    size = xdata.NET_PIX
    if on:
        oy = rng.integers(0, 2 * CROP + 1, n)
        ox = rng.integers(0, 2 * CROP + 1, n)
    else:
        oy = ox = np.full(n, CROP)
    ar = np.arange(size)
    iy = (oy[:, None] + ar[None, :])[:, :, None]
    ix = (ox[:, None] + ar[None, :])[:, None, :]
    rows = idx[:, None, None]
    counts = d["xray_counts"][rows, iy, ix].astype(np.int64)
    bkg = d["xray_background"][rows, iy, ix].astype(np.float64)
    opt = np.stack([d["optical"][rows, b, iy, ix] for b in range(3)], axis=1).astype(np.float64)
    if on:
        thin = rng.random(n) < 0.5
        p = np.where(thin, rng.uniform(0.35, 1.0, n), 1.0)
        counts = rng.binomial(counts, p[:, None, None])
        bkg = bkg * p[:, None, None]
        noisy = rng.random(n) < 0.5
        amp = np.where(noisy, rng.uniform(0.0, 1.5, n), 0.0)
        opt = (
            opt + rng.standard_normal(opt.shape) * (amp[:, None] * scales[None, :])[..., None, None]
        )
        k = rng.integers(0, 4, n)
        flip = rng.random(n) < 0.5
        # the eight flips/rotations, one group of samples at a time
        for kk in range(4):
            for ff in (False, True):
                sel = np.flatnonzero((k == kk) & (flip == ff))
                if sel.size == 0 or (kk == 0 and not ff):
                    continue
                for arr in (counts, bkg, opt):
                    a = np.rot90(arr[sel], kk, axes=(-2, -1))
                    arr[sel] = a[..., ::-1] if ff else a
    return counts, bkg, opt


def _auc(labels: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, score))


def predict_logits(model: Any, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Logits ``log p(cluster) − log p(not)`` of network inputs ``x``."""
    import torch

    from clusterfw.plugins.finders.xray.model import logit

    out = np.empty(x.shape[0])
    model.eval()
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            out[i : i + batch] = logit(model(torch.from_numpy(x[i : i + batch]))).numpy()
    return out


def split_inputs(d: dict[str, np.ndarray], mode: str, scales: np.ndarray) -> np.ndarray:
    """Centred, unaugmented network inputs of every candidate of a split."""
    idx = np.arange(d["label"].size)
    c, b, o = augment_batch(d, idx, np.random.default_rng(0), False, scales)
    return network_input(mode, c, b, o, scales)


def classification_metrics(
    labels: np.ndarray, prob: np.ndarray, threshold: float, n_boot: int = 200, seed: int = 0
) -> dict[str, float]:
    """Accuracy, precision, recall at ``threshold`` and AUC, with bootstrap σ of each."""
    labels = np.asarray(labels).astype(int)

    def stats(lab: np.ndarray, pr: np.ndarray) -> tuple[float, float, float, float]:
        pred = pr >= threshold
        tp = float(np.sum(pred & (lab == 1)))
        acc = float(np.mean(pred == (lab == 1)))
        prec = tp / max(1.0, float(pred.sum()))
        rec = tp / max(1.0, float(np.sum(lab == 1)))
        return acc, prec, rec, _auc(lab, pr)

    base = stats(labels, prob)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, labels.size, labels.size)
        if labels[i].min() == labels[i].max():
            continue
        boots.append(stats(labels[i], prob[i]))
    sd = np.std(np.asarray(boots), axis=0)
    names = ("accuracy", "precision", "recall", "auc")
    out = {k: base[j] for j, k in enumerate(names)}
    out.update({f"{k}_std": float(sd[j]) for j, k in enumerate(names)})
    out["n"] = int(labels.size)
    out["positives"] = int(labels.sum())
    return out


def balanced_subset(labels: np.ndarray, seed: int) -> np.ndarray:
    """Every sample of the rarer class and as many of the other drawn at random (Kosiba's
    balanced test set, 85 + 85)."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(labels == 1)
    neg = np.flatnonzero(labels == 0)
    n = min(pos.size, neg.size)
    pos = rng.choice(pos, size=n, replace=False)
    neg = rng.choice(neg, size=n, replace=False)
    return np.sort(np.concatenate([pos, neg]))


def train_one(
    mode: str,
    cfg: TrainConfig,
    tr: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    scales: np.ndarray,
    log: Any,
    checkpoint: Path | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train the network of ``mode``; returns the best-validation-AUC model and its history."""
    import torch
    import torch.nn.functional as F

    from clusterfw.plugins.finders.xray.model import KosibaCNN

    torch.manual_seed(cfg.seed * 10 + len(mode))
    rng = np.random.default_rng([cfg.seed, len(mode)])
    from clusterfw.plugins.finders.xray.preprocess import MODES

    model = KosibaCNN(MODES[mode], xdata.NET_PIX)
    if cfg.optimizer == "sgd":
        opt: Any = torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    # per-epoch monitoring on at most VAL_MONITOR validation candidates (a fixed random subset;
    # calibration and thresholds use them all)
    keep = np.arange(va["label"].size)
    if keep.size > VAL_MONITOR:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(keep, VAL_MONITOR, replace=False))
    vsub = {k: v[keep] for k, v in va.items()}
    xv = split_inputs(vsub, mode, scales)
    yv = vsub["label"].astype(int)
    pos = np.flatnonzero(tr["label"] == 1)
    neg = np.flatnonzero(tr["label"] == 0)
    n_each = min(pos.size, neg.size)
    if cfg.epoch_size > 0:
        n_each = min(n_each, max(1, cfg.epoch_size // 2))
    best: dict[str, Any] = {"auc": -1.0}
    history = []
    t0 = time.time()
    for epoch in range(cfg.epochs):
        if cfg.max_minutes > 0 and time.time() - t0 > 60.0 * cfg.max_minutes:
            break  # the wall-clock budget is spent: keep the best epoch so far
        model.train()
        # balanced: every sample of the rarer class and as many fresh ones of the other
        chosen = np.concatenate(
            [rng.choice(pos, size=n_each, replace=False), rng.choice(neg, n_each, replace=False)]
        )
        rng.shuffle(chosen)
        total = 0.0
        for i in range(0, chosen.size, cfg.batch_size):
            idx = chosen[i : i + cfg.batch_size]
            c, b, o = augment_batch(tr, idx, rng, cfg.augment, scales)
            x = torch.from_numpy(network_input(mode, c, b, o, scales))
            y = torch.from_numpy(tr["label"][idx].astype(np.int64))
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.size
        lv = np.nan_to_num(predict_logits(model, xv), nan=0.0)
        pv = 1.0 / (1.0 + np.exp(-lv))
        # validation loss at the natural mix of candidates (the plateau schedule's signal)
        eps = 1e-7
        val_loss = float(-np.mean(yv * np.log(pv + eps) + (1 - yv) * np.log(1 - pv + eps)))
        auc = _auc(yv, lv)
        sched.step(val_loss)
        rec = {
            "mode": mode,
            "epoch": epoch + 1,
            "train_loss": total / chosen.size,
            "val_loss": val_loss,
            "val_auc": auc,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.time() - t0,
        }
        history.append(rec)
        log(rec)
        if auc > best["auc"]:
            best = {
                "auc": auc,
                "epoch": epoch + 1,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
            if checkpoint is not None:  # the best network so far, safe to read mid-run
                from clusterfw.plugins.finders.xray.model import save_weights

                meta = {"mode": mode, "optical_scales": scales.tolist(), "epoch": epoch + 1}
                save_weights(model, str(checkpoint), meta)
    model.load_state_dict(best["state"])
    model.eval()
    return model, {
        "history": history,
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "val_auc": best["auc"],
    }


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Simulate (or reuse) the data, train each network of ``cfg.modes``, calibrate, test.

    Writes ``xray_<mode>.safetensors`` and ``platt_<mode>.json`` for every mode,
    ``metrics.jsonl`` (one line per epoch) and ``summary.json`` into ``cfg.out``.

    Returns
    -------
    dict
        The summary (config, data counts, per-mode validation and test metrics).
    """
    import torch

    from clusterfw.core.atomic import write_atomic
    from clusterfw.plugins.finders.xray.calibrate import fit_platt
    from clusterfw.plugins.finders.xray.model import save_weights

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    tr = xdata.load_candidates(split_paths(cfg, "train", progress))
    va = xdata.load_candidates(split_paths(cfg, "val", progress))
    te = xdata.load_candidates(split_paths(cfg, "test", progress))
    t_data = time.time() - t0
    for d in (tr, va, te):
        d["label"], d["kind"] = xdata.task_labels(d, cfg.label)
    scales = robust_scales(tr["optical"])
    metrics_path = out / "metrics.jsonl"
    lines: list[str] = []

    def log(rec: dict[str, Any]) -> None:
        lines.append(json.dumps(rec))
        text = "\n".join(lines) + "\n"
        write_atomic(metrics_path, lambda tmp: Path(tmp).write_text(text))
        if progress:
            print(json.dumps(rec), flush=True)

    summary: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "data": {
            s: {
                "candidates": int(d["label"].size),
                "positives": int(d["label"].sum()),
                "kinds": np.bincount(d["kind"], minlength=4).tolist(),
                "fields": int(np.unique(d["field"]).size),
            }
            for s, d in (("train", tr), ("val", va), ("test", te))
        },
        "optical_scales": scales.tolist(),
        "torch": torch.__version__,
        "modes": {},
    }
    bal = balanced_subset(te["label"], cfg.seed)
    first = np.flatnonzero(te["draw"] == 0)
    bal0 = first[balanced_subset(te["label"][first], cfg.seed)] if first.size else first
    for mode in cfg.modes:
        tm = time.time()
        model, hist = train_one(
            mode, cfg, tr, va, scales, log, out / f"checkpoint_{mode}.safetensors"
        )
        lv = predict_logits(model, split_inputs(va, mode, scales))
        platt = fit_platt(lv, va["label"])
        platt.save(out / f"platt_{mode}.json")
        pv = platt(lv)
        # threshold: best balanced accuracy on validation (Kosiba's sets are balanced)
        yv = va["label"].astype(int)
        grid = np.unique(np.round(pv, 4))
        bacc = [0.5 * (np.mean(pv[yv == 1] >= g) + np.mean(pv[yv == 0] < g)) for g in grid]
        thr = float(grid[int(np.argmax(bacc))])
        lt = predict_logits(model, split_inputs(te, mode, scales))
        pt = platt(lt)
        meta = {
            "mode": mode,
            "optical_scales": scales.tolist(),
            "net_pixel_arcsec": xdata.NET_PIXEL_ARCSEC,
            "net_pix": xdata.NET_PIX,
            "threshold_balanced": thr,
            "seed": cfg.seed,
        }
        save_weights(model, str(out / f"xray_{mode}.safetensors"), meta)
        summary["modes"][mode] = {
            **hist,
            "platt": {"a": platt.a, "b": platt.b},
            "threshold_balanced": thr,
            "test_balanced": classification_metrics(te["label"][bal], pt[bal], thr),
            "test_natural": classification_metrics(te["label"], pt, thr),
            "val_natural": classification_metrics(va["label"], pv, thr),
            # one X-ray draw per field only: no halo seen twice (independent candidates)
            "test_balanced_draw0": classification_metrics(te["label"][bal0], pt[bal0], thr)
            if bal0.size
            else None,
            "test_by_kind_mean_p": {
                k: float(np.mean(pt[te["kind"] == i])) if np.any(te["kind"] == i) else math.nan
                for i, k in enumerate(("fluctuation", "agn", "group", "cluster"))
            },
            "seconds": time.time() - tm,
        }
        summary["modes"][mode].pop("history")
    summary["seconds"] = {"data": t_data, "total": time.time() - t0}
    text = json.dumps(summary, indent=1)
    write_atomic(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
    return summary
