"""Training of the ``resnet`` finder: DeepSZ's dynamic stratified sampling (§2.2.2).

``train(config)`` runs the whole recipe and is what ``clusterfw train resnet`` calls:

1. simulate (or reuse) the train / validation / test cutouts (:mod:`.data`), disjoint patches;
2. fix the per-band normalisation scales from training pixels (:mod:`.normalise`);
3. for each negative:positive ratio ``r`` in ``config.ratios`` (1 upwards, towards the natural
   ratio) train one *epoch* on batches in which a cutout is positive with probability
   ``1 / (1 + r)``: SGD with weight decay, the learning rate rising linearly from a third of its
   peak over the first ``warmup_fraction`` of the epoch and dropping ten-fold after
   ``decay_fraction`` of it (the paper's 5e-3, 3e-3, and 500 / 1000 of ~2400 batches, scaled to
   our shorter epochs). Every ``eval_every`` batches
   the loss on a fixed validation subset re-weighted to ratio ``r`` (the paper's over-sampled
   validation set) is measured; the epoch ends after ``max_batches`` or when that loss has not
   improved for ``patience`` evaluations, and its best weights are kept, evaluated on the full
   natural-ratio validation set, saved, and used to start the next ratio;
4. pick the epoch whose weights give the highest F1 on the full validation set;
5. fit Platt scaling on its validation logits; report test-set metrics at the validation-picked
   threshold; write weights, calibration, metrics log and a model card.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clusterfw.plugins.finders.resnet.data import SplitSpec, ensure_split, load_split

PIXEL_ARCMIN = 0.25
CUTOUT_SIZE = 32
CORE_ARCMIN = 6.0
STRIDE_ARCMIN = 6.0


def cutouts_per_grid_patch(patch_arcmin: float) -> int:
    """Number of 6'-stride cutouts tiling one square patch of side ``patch_arcmin``."""
    stride = int(round(STRIDE_ARCMIN / PIXEL_ARCMIN))
    return int((round(patch_arcmin / PIXEL_ARCMIN) - CUTOUT_SIZE) // stride + 1) ** 2


@dataclass
class TrainConfig:
    """Every knob of a training run (all recorded in the model card).

    Parameters
    ----------
    out : Path
        Output folder (weights, calibration, metrics log, model card, checkpoints).
    seed : int
        Seeds the simulated data (per split), the initial weights and the sampler.
    data_dir : Path, optional
        Where the simulated cutouts are cached (default ``out/data``).
    width : int
        Network width (64 in the paper; see ``docs/finders/resnet.md`` for the shipped value).
    n_train : int
        Training cutouts (``balanced`` mode) with ``train_positive_fraction`` positives.
    n_val_patches, n_test_patches : int
        Whole patches (``grid_patch_arcmin`` square) tiled at 6' stride for validation and test.
    grid_patch_arcmin : float
        Side of the validation and test patches.
    ratios : tuple of int
        The negative:positive ratios of successive epochs.
    setting : str
        Simulator setting of every split (:data:`clusterfw.sim.settings.SETTINGS`):
        ``randomised`` (the training mixture, default) or ``default`` (the simulator with fixed
        parameters, on which the first shipped model was trained).
    labels : str
        Label preset (:data:`clusterfw.sim.cutouts.LABELS`): ``sz`` (M500c ≥ 1.5e14 Msun at any
        redshift, default) or ``deepsz`` (Mvir ≥ 2e14 Msun and z > 0.25, the paper's).
    mass_cut, mass_definition, z_min : float, str, float, optional
        Parts of the label preset to override (``None``: the preset's value).
    first_epoch_batches, max_batches : int
        Batch limit of the first epoch and of the others.

    Raises
    ------
    ValueError
        For an unknown setting or label preset.
    """

    out: Path
    seed: int = 1
    data_dir: Path | None = None
    width: int = 32
    n_train: int = 120_000
    train_positive_fraction: float = 0.15
    n_val_patches: int = 8
    n_test_patches: int = 6
    grid_patch_arcmin: float = 240.0
    setting: str = "randomised"
    labels: str = "sz"
    mass_cut: float | None = None
    mass_definition: str | None = None
    z_min: float | None = None
    ratios: tuple[int, ...] = (1, 2, 4, 6, 9, 13)
    batch_size: int = 64
    first_epoch_batches: int = 1500
    max_batches: int = 500
    lr: float = 2e-2
    weight_decay: float = 3e-3
    momentum: float = 0.9
    warmup_fraction: float = 0.2
    decay_fraction: float = 0.5
    eval_every: int = 50
    patience: int = 4
    eval_subset: int = 2000
    threads: int = 1
    scale_mode: str = "per_band"
    scale_multiplier: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from clusterfw.sim.cutouts import label_options
        from clusterfw.sim.settings import SETTINGS

        if self.setting not in SETTINGS:
            raise ValueError(
                f"unknown setting {self.setting!r} (choose from {', '.join(SETTINGS)})"
            )
        cut = label_options(
            self.labels,
            mass_cut=self.mass_cut,
            mass_definition=self.mass_definition,
            z_min=self.z_min,
        )
        self.mass_cut = float(cut["mass_cut"])
        self.mass_definition = str(cut["mass_definition"])
        self.z_min = float(cut["z_min"])

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["out"] = str(self.out)
        d["data_dir"] = str(self.data_dir) if self.data_dir else None
        d["ratios"] = list(self.ratios)
        return d


def lr_at(step: int, n_batches: int, cfg: TrainConfig) -> float:
    """Learning rate at batch ``step`` of an epoch of ``n_batches``.

    Linear warm-up from ``lr / 3`` to ``lr`` over the first ``warmup_fraction`` of the epoch,
    then ``lr``, then ``lr / 10`` after ``decay_fraction`` of it (the paper: 500 and 1000
    batches of epochs of ~2400).
    """
    warm = max(int(round(cfg.warmup_fraction * n_batches)), 1)
    if step < warm:
        lo = cfg.lr / 3.0
        return lo + (cfg.lr - lo) * step / warm
    if step >= int(round(cfg.decay_fraction * n_batches)):
        return cfg.lr / 10.0
    return cfg.lr


def stratified_batch(
    rng: np.random.Generator, pos_idx: np.ndarray, neg_idx: np.ndarray, size: int, ratio: float
) -> np.ndarray:
    """Indices of one batch of the sample S_r: each draw is positive with probability 1/(1+r).

    Positives (and, when ``r`` exceeds the stored ratio, negatives) are drawn with replacement,
    i.e. over-sampled, as DeepSZ's data loader.
    """
    n_pos = int(rng.binomial(size, 1.0 / (1.0 + ratio)))
    return np.r_[rng.choice(pos_idx, n_pos), rng.choice(neg_idx, size - n_pos)]


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Maximum F1 over thresholds and the threshold reaching it (score ≥ threshold)."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    y = labels[order].astype(np.int64)
    tp = np.cumsum(y)
    k = np.arange(1, s.size + 1)
    last = np.r_[s[1:] != s[:-1], True]  # only cut between distinct scores
    f1 = np.where(last, 2 * tp / (k + y.sum()), 0.0)
    i = int(np.argmax(f1))
    return float(f1[i]), float(s[i])


def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Cutout confusion matrix and purity / completeness / F1 at ``threshold``."""
    pred = scores >= threshold
    lab = labels.astype(bool)
    tp, fp = int(np.sum(pred & lab)), int(np.sum(pred & ~lab))
    fn, tn = int(np.sum(~pred & lab)), int(np.sum(~pred & ~lab))
    purity = tp / (tp + fp) if tp + fp else 0.0
    completeness = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "purity": purity, "completeness": completeness, "f1": f1,
    }  # fmt: skip


class _Log:
    """JSON-lines metrics log (one object per line, flushed)."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def __call__(self, **rec: Any) -> None:
        self.fh.write(json.dumps(rec) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _augment(x: Any, gen: Any) -> Any:
    """Random dihedral transform of each cutout (the central-box label is invariant)."""
    import torch

    n = x.shape[0]
    m = torch.rand(n, 3, generator=gen) < 0.5
    x = torch.where(m[:, 0, None, None, None], x.flip(3), x)
    x = torch.where(m[:, 1, None, None, None], x.flip(2), x)
    x = torch.where(m[:, 2, None, None, None], x.transpose(2, 3), x)
    return x


def predict_logits(model: Any, x: Any, batch: int = 512) -> np.ndarray:
    """Logits of normalised cutouts (a torch tensor), in eval mode, batched."""
    import torch

    was = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            xb = x[i : i + batch].contiguous(memory_format=torch.channels_last)
            out.append(model(xb).float().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _weighted_bce(logits: np.ndarray, labels: np.ndarray, ratio: float) -> float:
    """BCE on a validation sample re-weighted so negatives:positives = ``ratio``."""
    y = labels.astype(np.float64)
    z = logits.astype(np.float64)
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    n_pos, n_neg = y.sum(), (1 - y).sum()
    w = np.where(y > 0, 1.0, ratio * n_pos / max(n_neg, 1.0))
    return float(np.sum(w * loss) / np.sum(w))


def prepare_data(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Simulate (or reuse) the three splits and load them."""
    data_dir = cfg.data_dir or cfg.out / "data"
    assert cfg.mass_cut is not None and cfg.z_min is not None and cfg.mass_definition
    common: dict[str, Any] = dict(
        mass_cut=cfg.mass_cut,
        z_min=cfg.z_min,
        mass_definition=cfg.mass_definition,
        setting=cfg.setting,
    )
    specs = {
        "train": SplitSpec(
            n=cfg.n_train, mode="balanced", positive_fraction=cfg.train_positive_fraction, **common
        ),
        "val": SplitSpec(
            n=cfg.n_val_patches * cutouts_per_grid_patch(cfg.grid_patch_arcmin),
            mode="grid",
            patch_arcmin=cfg.grid_patch_arcmin,
            **common,
        ),
        "test": SplitSpec(
            n=cfg.n_test_patches * cutouts_per_grid_patch(cfg.grid_patch_arcmin),
            mode="grid",
            patch_arcmin=cfg.grid_patch_arcmin,
            **common,
        ),
    }
    out: dict[str, Any] = {"specs": {k: v.as_dict() for k, v in specs.items()}}
    for split, spec in specs.items():
        out[split] = load_split(ensure_split(data_dir, split, spec, cfg.seed, progress=progress))
    out["data_dir"] = str(data_dir)
    return out


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run the full training recipe (see the module docstring).

    Returns
    -------
    dict
        The summary also written to ``out/summary.json``.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from clusterfw.plugins.finders.resnet.calibrate import fit_platt
    from clusterfw.plugins.finders.resnet.model import DeepSZResNet, forward_flops, save_weights
    from clusterfw.plugins.finders.resnet.normalise import (
        common_scales,
        normalise,
        robust_scales,
    )
    from clusterfw.sim.config import spt3g_bands

    t_start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    log = _Log(out / "metrics.jsonl")
    log(event="config", **cfg.as_dict())
    torch.manual_seed(cfg.seed)

    data = prepare_data(cfg, progress)
    t_data = time.perf_counter() - t_start
    tr, va, te = data["train"], data["val"], data["test"]
    sigmas = robust_scales(tr.images, seed=cfg.seed)
    scales = common_scales(sigmas, cfg.scale_mode, cfg.scale_multiplier)
    x_tr = torch.from_numpy(normalise(tr.images, scales))
    x_va = torch.from_numpy(normalise(va.images, scales))
    x_te = torch.from_numpy(normalise(te.images, scales))
    y_tr, y_va, y_te = tr.labels.astype(np.int64), va.labels.astype(np.int64), te.labels
    del tr.images, va.images, te.images
    log(
        event="data",
        seconds=round(t_data, 1),
        scales_uk=scales.tolist(),
        robust_sigma_uk=sigmas.tolist(),
        n={k: int(len(data[k].labels)) for k in ("train", "val", "test")},
        positives={k: int(data[k].labels.sum()) for k in ("train", "val", "test")},
    )
    pos_idx = np.flatnonzero(y_tr == 1)
    neg_idx = np.flatnonzero(y_tr == 0)
    natural_ratio = float((y_va == 0).sum() / max((y_va == 1).sum(), 1))

    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 10]))
    gen = torch.Generator().manual_seed(cfg.seed)
    # fixed validation subset for the in-epoch checks: all positives up to a quarter of it
    vp, vn = np.flatnonzero(y_va == 1), np.flatnonzero(y_va == 0)
    n_sub_pos = min(vp.size, cfg.eval_subset // 4)
    sub = np.sort(
        np.r_[
            rng.choice(vp, n_sub_pos, replace=False),
            rng.choice(vn, min(vn.size, cfg.eval_subset - n_sub_pos), replace=False),
        ]
    )
    x_sub, y_sub = x_va[sub], y_va[sub]

    model = DeepSZResNet(in_channels=x_tr.shape[1], size=x_tr.shape[-1], width=cfg.width)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    epochs: list[dict[str, Any]] = []
    global_step = 0
    for epoch, ratio in enumerate(cfg.ratios):
        n_batches = cfg.first_epoch_batches if epoch == 0 else cfg.max_batches
        best_loss, best_state, since_best, best_step = math.inf, None, 0, 0
        running = 0.0
        bar = tqdm(
            range(n_batches), desc=f"r={ratio:>2}", file=sys.stderr, disable=not progress,
            leave=True, dynamic_ncols=True,
        )  # fmt: skip
        model.train()
        for step in bar:
            lr = lr_at(step, n_batches, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = stratified_batch(rng, pos_idx, neg_idx, cfg.batch_size, ratio)
            xb = _augment(x_tr[idx], gen).contiguous(memory_format=torch.channels_last)
            yb = torch.from_numpy(y_tr[idx]).float()
            loss = F.binary_cross_entropy_with_logits(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            global_step += 1
            lval = float(loss.detach())
            running = 0.9 * running + 0.1 * lval if step else lval
            if (step + 1) % cfg.eval_every == 0 or step == n_batches - 1:
                vloss = _weighted_bce(predict_logits(model, x_sub), y_sub, ratio)
                improved = vloss < best_loss
                if improved:
                    best_loss, since_best, best_step = vloss, 0, step + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    since_best += 1
                log(
                    event="eval", ratio=ratio, epoch=epoch, batch=step + 1,
                    global_batch=global_step, lr=lr, train_loss=round(running, 5),
                    val_loss_at_ratio=round(vloss, 5), best=improved,
                    elapsed_s=round(time.perf_counter() - t_start, 1),
                )  # fmt: skip
                bar.set_postfix(loss=f"{running:.3f}", val=f"{vloss:.3f}")
                if since_best >= cfg.patience:
                    break
        bar.close()
        assert best_state is not None
        model.load_state_dict(best_state)
        logits = predict_logits(model, x_va)
        f1, thr = best_f1(logits, y_va)
        nat_loss = _weighted_bce(logits, y_va, natural_ratio)
        ckpt = out / "checkpoints" / f"r{ratio:02d}.safetensors"
        save_weights(model, str(ckpt), {"ratio": ratio, "scales_uk": scales.tolist()})
        rec = {
            "event": "epoch", "ratio": ratio, "epoch": epoch, "best_batch": best_step,
            "val_loss_at_ratio": round(best_loss, 5), "val_loss_natural": round(nat_loss, 5),
            "val_f1": round(f1, 4), "val_threshold_logit": thr, "checkpoint": ckpt.name,
            "elapsed_s": round(time.perf_counter() - t_start, 1),
        }  # fmt: skip
        log(**rec)
        epochs.append(rec)
        if progress:
            print(
                f"r={ratio}: best val loss {best_loss:.4f} at batch {best_step}, "
                f"full-val F1 {f1:.3f}",
                file=sys.stderr,
            )

    # final model: best full-validation F1 over the per-ratio checkpoints
    chosen = max(epochs, key=lambda e: (e["val_f1"], -e["val_loss_natural"]))
    from clusterfw.plugins.finders.resnet.model import load_weights

    model, _ = load_weights(str(out / "checkpoints" / chosen["checkpoint"]))
    model = model.to(memory_format=torch.channels_last)
    logits_va = predict_logits(model, x_va)
    platt = fit_platt(logits_va, y_va)
    p_va = platt(logits_va)
    f1_va, thr_p = best_f1(p_va, y_va)
    p_te = platt(predict_logits(model, x_te))
    test_cm = confusion(p_te, y_te, thr_p)
    val_cm = confusion(p_va, y_va, thr_p)
    # reliability of the calibrated probabilities on the test set (10 bins)
    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(p_te, edges) - 1, 0, 9)
    reliability = [
        {
            "bin": [float(edges[i]), float(edges[i + 1])],
            "n": int((which == i).sum()),
            "mean_p": float(p_te[which == i].mean()) if (which == i).any() else None,
            "frac_pos": float(y_te[which == i].mean()) if (which == i).any() else None,
        }
        for i in range(10)
    ]
    from sklearn.metrics import average_precision_score, brier_score_loss

    bands = spt3g_bands()
    meta = {
        "bands": [b.name for b in bands],
        "freq_ghz": [b.freq_ghz for b in bands],
        "pixel_arcmin": PIXEL_ARCMIN,
        "cutout_size": CUTOUT_SIZE,
        "core_arcmin": CORE_ARCMIN,
        "stride_arcmin": STRIDE_ARCMIN,
        "scales_uk": scales.tolist(),
        "normalisation": "arcsinh((x - cutout median) / scale_b)",
        "setting": cfg.setting,
        "labels": cfg.labels,
        "mass_cut": cfg.mass_cut,
        "mass_definition": cfg.mass_definition,
        "z_min": cfg.z_min,
        "ratio": chosen["ratio"],
        "seed": cfg.seed,
    }
    save_weights(model, str(out / "resnet.safetensors"), meta)
    platt.save(out / "platt.json")
    summary = {
        "config": cfg.as_dict(),
        "data": data["specs"],
        "n": {k: int(len(data[k].labels)) for k in ("train", "val", "test")},
        "positives": {k: int(data[k].labels.sum()) for k in ("train", "val", "test")},
        "natural_ratio_val": natural_ratio,
        "scales_uk": scales.tolist(),
        "epochs": epochs,
        "chosen": chosen,
        "platt": {"a": platt.a, "b": platt.b},
        "threshold_probability": thr_p,
        "val": {
            **val_cm,
            "best_f1": f1_va,
            "average_precision": float(average_precision_score(y_va, p_va)),
            "brier": float(brier_score_loss(y_va, p_va)),
        },
        "test": {
            **test_cm,
            "average_precision": float(average_precision_score(y_te, p_te)),
            "brier": float(brier_score_loss(y_te, p_te)),
            "reliability": reliability,
        },
        "params": int(sum(p.numel() for p in model.parameters())),
        "forward_mflop": forward_flops(model) / 1e6,
        "seconds": {
            "data": round(t_data, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },
        "torch": torch.__version__,
    }
    log(event="final", **{k: v for k, v in summary.items() if k not in ("config", "epochs")})
    log.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
