"""Training of the ``frcnn`` finder (what ``clusterfw train frcnn`` runs).

1. Simulate (or reuse) the fields: ``train_<k>`` folders of ``n_train / n_chunks`` fields each,
   a ``val`` and a ``test`` folder (``clusterfw simulate optical-fields`` shards, DES-like depth
   and seeing on 0.526" pixels summed 2 × 2 to 1.052", seeing and depth drawn per field). The
   splits are independent skies (seeds ``10·seed + k`` for training chunk ``k`` = 1, 2, ...,
   ``20·seed + 1`` for validation, ``30·seed + 1`` for test): no field, halo or galaxy is shared,
   which is what a split by sky position guarantees on a survey.
2. Train torchvision's Faster R-CNN (:mod:`.model`) from random weights (or, with ``init``, from
   earlier weights: a warm restart) with AdamW (weight decay 1e-4, a linear warm-up over the
   first 50 steps), gradient-norm clipping at 10 (Deep-CEE), ``batch_size`` augmented windows
   per step (:func:`.data.augment`), one thread by default. The learning rate follows
   ``schedule`` (:func:`learning_rate`): ``cosine`` (default) decays from ``lr`` to ``lr_min``
   over the planned ``epochs``, fixed in advance so that no validation number can change it;
   ``plateau`` multiplies it by 0.3 when the validation F1 has not improved for two epochs (the
   first shipped run's rule: on a 50-field validation F1 it fired on noise).
3. After every epoch: detections on the central window of every validation field, greedily
   matched to the true centres within 1'; F1 maximised over the score threshold. The weights of
   the best epoch are kept (``frcnn.safetensors``), every epoch's numbers go to
   ``metrics.jsonl``; training stops after ``epochs`` or ``max_minutes``.
4. Platt scaling (:class:`clusterfw.plugins.finders.resnet.calibrate.Platt`) of the logit of the
   best epoch's detection scores on the validation fields (label: matched within 1'), the
   probability threshold with the best validation F1, and the test-field numbers at it.
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

from clusterfw.plugins.finders.frcnn.prep import PIXEL_ARCSEC, SOFT_NMGY, STRETCH_NORM

FIELD_OPTIONS = {"preset": "des-coarse", "rebin": 2, "size_deg": 0.2}


@dataclass
class TrainConfig:
    """Every knob of a training run (recorded in the model card)."""

    out: Path
    seed: int = 1
    data_dir: Path | None = None
    n_train: int = 300
    n_chunks: int = 3
    n_val: int = 50
    n_test: int = 50
    width: int = 16
    window: int = 160
    head: int = 256
    batch_size: int = 2
    epochs: int = 40
    max_minutes: float = 60.0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    threads: int = 1
    match_arcmin: float = 1.0
    schedule: str = "cosine"
    lr_min: float = 1e-5
    init: Path | None = None
    box_centre: str = "halo"
    extra: dict[str, Any] = field(default_factory=dict)


def split_seed(seed: int, split: str, k: int = 1) -> int:
    """Simulation seed of a split (see the module docstring)."""
    return {"train": 10 * seed + k, "val": 20 * seed + 1, "test": 30 * seed + 1}[split]


def ensure_fields(cfg: TrainConfig, progress: bool = True) -> dict[str, list[Path]]:
    """The shard folders of every split, simulated where missing."""
    from clusterfw.sim.shards.common import read_manifest, write_dataset
    from clusterfw.sim.shards.detection import KIND, OpticalFieldsConfig, field_samples

    data = Path(cfg.data_dir) if cfg.data_dir else Path(cfg.out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    fcfg = OpticalFieldsConfig(**FIELD_OPTIONS)
    fcfg.validate_options()
    per = math.ceil(cfg.n_train / cfg.n_chunks)
    plan = [(f"train_s{split_seed(cfg.seed, 'train', k)}", split_seed(cfg.seed, "train", k), per)
            for k in range(1, cfg.n_chunks + 1)]  # fmt: skip
    plan += [("val", split_seed(cfg.seed, "val"), cfg.n_val)]
    plan += [("test", split_seed(cfg.seed, "test"), cfg.n_test)]
    out: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for name, s, n in plan:
        d = data / name
        if not (d / "manifest.json").is_file():
            write_dataset(d, KIND, s, fcfg.model_dump(mode="json"), n, 25,
                          field_samples(fcfg, s, n), progress=progress)  # fmt: skip
        m = read_manifest(d)
        if int(m["seed"]) != s or m["config"]["preset"] != fcfg.preset:
            from clusterfw.core.errors import InputError

            raise InputError(str(d), f"cached fields have seed {m['seed']}, expected {s}")
        if int(m["count"]) != n:
            from clusterfw.core.errors import InputError

            raise InputError(
                str(d),
                f"cached folder holds {m['count']} fields, this run needs {n} "
                "(remove it to simulate it again, or match --n-train / --n-chunks to it)",
            )
        out[name.split("_")[0]].append(d)
    return out


SCHEDULES = ("cosine", "plateau")
WARMUP_STEPS = 50


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, plateau_lr: float) -> float:
    """The learning rate of optimiser step ``step`` (0-based).

    Parameters
    ----------
    cfg : TrainConfig
        ``schedule``, ``lr`` and ``lr_min`` are used.
    step : int
        Steps taken so far.
    total_steps : int
        Steps planned (``epochs`` × steps per epoch): the cosine reaches ``lr_min`` there.
    plateau_lr : float
        The current rate of the ``plateau`` rule (ignored by ``cosine``).

    Returns
    -------
    float
        Both schedules ramp linearly over the first 50 steps.
    """
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    if cfg.schedule == "plateau":
        return plateau_lr * warm
    if cfg.schedule != "cosine":
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {cfg.schedule!r}")
    t = min(1.0, step / max(1, total_steps))
    return warm * (cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1.0 + math.cos(math.pi * t)))


def _targets(boxes: np.ndarray) -> dict[str, Any]:
    import torch

    b = torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4))
    return {"boxes": b, "labels": torch.ones(b.shape[0], dtype=torch.int64)}


def detect_windows(model: Any, windows: np.ndarray, batch: int = 4) -> list[dict[str, np.ndarray]]:
    """Raw detections (boxes in window pixels, scores) of ``(n, 3, w, w)`` windows."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            xs = [
                torch.from_numpy(np.ascontiguousarray(w, np.float32))
                for w in windows[i : i + batch]
            ]
            for r in model(xs):
                out.append({"boxes": r["boxes"].numpy(), "scores": r["scores"].numpy()})
    return out


def kpc_radius_pix(z: np.ndarray, kpc: float = 100.0) -> np.ndarray:
    """``kpc`` at redshift ``z`` in working pixels."""
    from clusterfw.sim.cosmology import angular_diameter_distance

    da = np.asarray(angular_diameter_distance(np.asarray(z, float)), float)  # Mpc
    return (kpc / 1000.0) / da * (180 / np.pi * 3600) / PIXEL_ARCSEC


def evaluate_fields(model: Any, fs: Any, window: int, match_arcmin: float) -> dict[str, Any]:
    """Detections on the central windows of ``fs`` matched within 1' and within 100 kpc."""
    from clusterfw.plugins.finders.frcnn.data import centre_crop
    from clusterfw.plugins.finders.frcnn.metrics import best_f1, match_field, pool

    wins, corners = [], []
    for i in range(len(fs)):
        w, x0, y0 = centre_crop(fs, i, window)
        wins.append(w)
        corners.append((x0, y0))
    dets = detect_windows(model, np.stack(wins))
    parts_a, parts_k, per_field = [], [], []
    for i, d in enumerate(dets):
        x0, y0 = corners[i]
        c = fs.centres[i] - np.array([x0, y0])
        inside = (c[:, 0] >= 0) & (c[:, 0] < window) & (c[:, 1] >= 0) & (c[:, 1] < window)
        xy = np.stack([(d["boxes"][:, 0] + d["boxes"][:, 2]) / 2,
                       (d["boxes"][:, 1] + d["boxes"][:, 3]) / 2], axis=1)  # fmt: skip
        r_a = match_arcmin * 60 / PIXEL_ARCSEC
        tp, ts, off = match_field(xy, d["scores"], c[inside], r_a)
        parts_a.append((d["scores"], tp, ts, off))
        r_k = kpc_radius_pix(fs.z[i][inside])
        tp2, ts2, off2 = match_field(xy, d["scores"], c[inside], r_k)
        parts_k.append((d["scores"], tp2, ts2, off2))
        per_field.append({"z": fs.z[i][inside], "m500c": fs.m500c[i][inside]})
    ma, mk = pool(parts_a), pool(parts_k)
    return {"arcmin": ma, "kpc": mk, "best_arcmin": best_f1(ma), "best_kpc": best_f1(mk),
            "truth": per_field}  # fmt: skip


def calibrate_matched(m: Any, platt: Any) -> Any:
    """``m`` with its raw scores replaced by Platt probabilities of their logits."""
    from clusterfw.plugins.finders.frcnn.metrics import Matched

    def p(v: np.ndarray) -> np.ndarray:
        out = np.full(v.shape, -np.inf)
        fin = np.isfinite(v)
        vv = np.clip(v[fin], 1e-6, 1 - 1e-6)
        out[fin] = platt(np.log(vv / (1 - vv)))
        return out

    return Matched(p(m.score), m.tp, p(m.truth_score), m.offset)


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run the whole recipe (module docstring); return the summary written to ``summary.json``."""
    import torch

    from clusterfw.core.atomic import write_atomic
    from clusterfw.plugins.finders.frcnn.data import augment, load_fields
    from clusterfw.plugins.finders.frcnn.metrics import f1_at
    from clusterfw.plugins.finders.frcnn.model import build_model, load_weights, save_weights
    from clusterfw.plugins.finders.resnet.calibrate import fit_platt

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t_start = time.time()

    def say(msg: str) -> None:
        if progress:
            print(f"[frcnn {time.time() - t_start:7.0f}s] {msg}", file=sys.stderr, flush=True)

    dirs = ensure_fields(cfg, progress)
    say(f"fields ready: {[str(p) for v in dirs.values() for p in v]}")
    tr = load_fields(dirs["train"], box_centre=cfg.box_centre)
    va = load_fields(dirs["val"], box_centre=cfg.box_centre)
    say(f"loaded {len(tr)} training and {len(va)} validation fields {tr.x.shape[2:]}")
    if cfg.init is not None:
        model, init_meta = load_weights(str(cfg.init))
        if int(init_meta.get("window", cfg.window)) != cfg.window:
            from clusterfw.core.errors import InputError

            raise InputError(str(cfg.init), f"window {init_meta.get('window')} != {cfg.window}")
        say(f"warm restart from {cfg.init} (epoch {init_meta.get('epoch')})")
    else:
        model = build_model(cfg.width, cfg.window, cfg.head)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    meta = {
        "pixel_arcsec": PIXEL_ARCSEC,
        "soft_nmgy": SOFT_NMGY,
        "stretch_norm": STRETCH_NORM,
        "bands": ["g", "r", "i"],
        "window": cfg.window,
        "trained_on": "clusterfw simulate optical-fields (des-coarse, rebin 2)",
        "box_centre": cfg.box_centre,
    }
    weights = out / "frcnn.safetensors"
    log = out / "metrics.jsonl"
    log.write_text("")
    best, best_epoch, stale, step = -1.0, -1, 0, 0
    lr_now = cfg.lr
    epoch_times = []
    steps_per_epoch = len(tr) // cfg.batch_size
    total_steps = cfg.epochs * steps_per_epoch
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.time()
        order = rng.permutation(len(tr))
        losses: dict[str, list[float]] = {}
        for b in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            imgs, tgts = [], []
            for i in order[b : b + cfg.batch_size]:
                x, bx = augment(tr, int(i), cfg.window, rng)
                imgs.append(torch.from_numpy(x))
                tgts.append(_targets(bx))
            lr_step = learning_rate(cfg, step, total_steps, lr_now)
            for g in opt.param_groups:
                g["lr"] = lr_step
            loss_dict = model(imgs, tgts)
            loss = sum(loss_dict.values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            step += 1
            for k, v in loss_dict.items():
                losses.setdefault(k, []).append(float(v.detach()))
            if progress and step % 25 == 0:
                say(f"epoch {epoch} step {step} loss {float(loss.detach()):.3f}")
        t_train = time.time() - t0
        epoch_times.append(t_train)
        model.eval()
        ev = evaluate_fields(model, va, cfg.window, cfg.match_arcmin)
        f1 = ev["best_arcmin"]["f1"]
        rec = {
            "epoch": epoch,
            "step": step,
            "lr": lr_step,
            "train_s": round(t_train, 1),
            "elapsed_s": round(time.time() - t_start, 1),
            "loss": {k: float(np.mean(v)) for k, v in losses.items()},
            "val_best_arcmin": ev["best_arcmin"],
            "val_best_100kpc": ev["best_kpc"],
        }
        with log.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        say(
            f"epoch {epoch}: {t_train:.0f}s, loss {sum(rec['loss'].values()):.3f}, val F1(1') "
            f"{f1:.3f} F1(100 kpc) {ev['best_kpc']['f1']:.3f}"
        )
        if f1 > best:
            best, best_epoch, stale = f1, epoch, 0
            save_weights(model, str(weights), {**meta, "epoch": epoch})
        elif cfg.schedule == "plateau":
            stale += 1
            if stale >= 2:
                lr_now *= 0.3
                stale = 0
        if (time.time() - t_start) / 60 > cfg.max_minutes:
            say("time budget spent")
            break
    # calibration on the validation fields with the best epoch's weights
    model, _ = load_weights(str(weights))
    ev = evaluate_fields(model, va, cfg.window, cfg.match_arcmin)
    s = np.clip(ev["arcmin"].score, 1e-6, 1 - 1e-6)
    platt = fit_platt(np.log(s / (1 - s)), ev["arcmin"].tp.astype(int))
    platt.save(out / "platt.json")

    def calibrated(m: Any) -> Any:
        return calibrate_matched(m, platt)

    from clusterfw.plugins.finders.frcnn.metrics import best_f1

    val_a = best_f1(calibrated(ev["arcmin"]))
    p_thr = val_a["threshold"]
    te = load_fields(dirs["test"], box_centre=cfg.box_centre)
    et = evaluate_fields(model, te, cfg.window, cfg.match_arcmin)
    test_a = f1_at(calibrated(et["arcmin"]), p_thr)
    test_k = f1_at(calibrated(et["kpc"]), p_thr)
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "fields": {k: [str(p) for p in v] for k, v in dirs.items()},
        "n_fields": {"train": len(tr), "val": len(va), "test": len(te)},
        "best_epoch": best_epoch,
        "epochs_run": len(epoch_times),
        "epoch_seconds": [round(t, 1) for t in epoch_times],
        "platt": {"a": platt.a, "b": platt.b, "n_fit": platt.n_fit, "n_positive": platt.n_positive},
        "threshold_probability": p_thr,
        "val_1arcmin": val_a,
        "test_1arcmin": test_a,
        "test_100kpc_box_centre": test_k,
        "minutes": round((time.time() - t_start) / 60, 1),
    }
    write_atomic(out / "summary.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))  # fmt: skip
    return summary
