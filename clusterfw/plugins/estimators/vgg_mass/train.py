"""``clusterfw train vgg_mass``: fit the VGG mass network on simulated mass-cutout shards.

Steps (:func:`train`):

1. read the shards (:func:`clusterfw.plugins.estimators.vgg_mass.data.load_mass_data`, every
   shard sha256-checked against its manifest), normalise the chosen channels;
2. split train / validation / test (:func:`~clusterfw.plugins.estimators.vgg_mass.data.
   split_indices`, seeded; 70/15/15);
3. fix the seeds (``keras.utils.set_random_seed``; TensorFlow op determinism on) and the CPU
   threads, build the network (:mod:`~clusterfw.plugins.estimators.vgg_mass.model`) and fit it
   with Adam on the Gaussian NLL, batches of 50 (Yan et al.), one Keras progress line per epoch
   on stderr, ``metrics.csv`` (one row per epoch: loss, val_loss, learning rate, seconds);
4. the learning rate halves after ``patience // 2`` epochs without a better validation NLL;
   early stopping after ``--patience`` such epochs (the best epoch's weights are kept);
   ``--max-minutes`` stops after the epoch that passes the budget;
5. measure on the validation and test clusters: the median and the standard deviation of
   ``ln(M_est / M_true)``, the robust scatter (half the 16–84 % range), the 68 % coverage of the
   predicted σ, per mass and redshift bin, and the same for the Y–M inversion baseline
   (:mod:`~clusterfw.plugins.estimators.vgg_mass.baseline`) on the same clusters;
6. write ``OUT/`` atomically: ``vgg_mass_<channels>.weights.h5`` (Keras weights, HDF5, no
   pickle), ``vgg_mass_<channels>.json`` (architecture and normalisation, checked when loaded),
   ``metrics.csv``, ``metrics.json`` (everything measured), ``predictions.csv`` (per held-out
   cluster: true mass, z, the network's mass and σ, the Y–M mass and σ) and ``MODEL.md``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_VERSION = 1
OUTPUT_NAMES = ("metrics.csv", "metrics.json", "predictions.csv", "MODEL.md")


def stem(channels: Sequence[str]) -> str:
    """File stem of a channel set's network: ``vgg_mass_y``, ``vgg_mass_y_xray``, ..."""
    return "vgg_mass_" + "_".join(channels)


@dataclass
class TrainConfig:
    """Options of :func:`train` (the CLI's)."""

    data: Path | tuple[Path, ...]
    out: Path
    channels: tuple[str, ...] = ("y",)
    seed: int = 1
    epochs: int = 200
    batch_size: int = 50
    lr: float = 1e-3
    patience: int = 10
    rebin: int = 1
    limit: int | None = None
    threads: int = 2
    max_minutes: float = math.inf
    baseline: bool = True
    z_range: tuple[float, float] | None = None
    beta_nll: float = 0.0
    median_calibration: bool = False
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    extra: dict[str, Any] = field(default_factory=dict)


def residual_stats(ln_ratio: np.ndarray, sigma: np.ndarray | None = None) -> dict[str, float | int]:
    """Median, mean, std and robust σ (half the 16–84 % range) of ``ln(M_est/M_true)``.

    With ``sigma`` (predicted σ of ln M): the fraction of truths inside ±1σ (68 % coverage).
    Non-finite entries are left out and counted.
    """
    ok = np.isfinite(ln_ratio)
    r = ln_ratio[ok]
    out: dict[str, float | int] = {"n": int(r.size), "n_failed": int((~ok).sum())}
    if r.size == 0:
        return out
    p16, p50, p84 = np.percentile(r, [16, 50, 84])
    out.update(
        median=float(p50),
        mean=float(r.mean()),
        std=float(r.std(ddof=1)) if r.size > 1 else math.nan,
        robust_sigma=float(0.5 * (p84 - p16)),
        # standard error of the median of a Gaussian of that width: √(π/2) σ / √n
        median_se=float(1.2533 * 0.5 * (p84 - p16) / math.sqrt(r.size)),
    )
    if sigma is not None:
        s = np.asarray(sigma)[ok]
        out["coverage68"] = float(np.mean(np.abs(r) <= s))
        out["median_sigma"] = float(np.median(s))
    return out


def binned_stats(
    ln_ratio: np.ndarray, m_true: np.ndarray, z: np.ndarray, sigma: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """:func:`residual_stats` in bins of true mass (0.25 dex from 1e14) and z (0.1–1 by 0.3)."""
    rows = []
    lm = np.log10(m_true)
    for lo in np.arange(14.0, 15.0, 0.25):
        sel = (lm >= lo) & (lm < lo + 0.25)
        s = residual_stats(ln_ratio[sel], None if sigma is None else sigma[sel])
        rows.append({"by": "log10_m500c", "lo": float(lo), "hi": float(lo + 0.25), **s})
    for lo in (0.1, 0.4, 0.7):
        sel = (z >= lo) & (z < lo + 0.3 + (1e-9 if lo == 0.7 else 0))
        s = residual_stats(ln_ratio[sel], None if sigma is None else sigma[sel])
        rows.append({"by": "z", "lo": lo, "hi": round(lo + 0.3, 2), **s})
    return rows


#: The acceptance range of issue 15 (held-out clusters): M500c and z.
ACCEPT_M = (1e14, 1e15)
ACCEPT_Z = (0.1, 1.0)
#: Bins of the acceptance table (0.25 dex in mass × 0.3 in z) and the fewest clusters counted.
MIN_BIN = 30


def sigma_scale_factor(ln_ratio: np.ndarray, sigma: np.ndarray) -> float:
    """The factor ``s`` for which ``|ln ratio| ≤ s σ`` holds for 68.27 % of the clusters.

    Fitted on the validation split and stored with the network (``sigma_scale``); the
    estimator multiplies the head's σ by it (a single scale: the head's σ ranks the clusters,
    the factor fixes the level).
    """
    ok = np.isfinite(ln_ratio) & np.isfinite(sigma) & (sigma > 0)
    if not ok.any():
        return 1.0
    return float(np.quantile(np.abs(ln_ratio[ok]) / sigma[ok], 0.6827))


#: Quantile bins of the estimate for :func:`fit_sigma_scale_map`, and the fewest clusters per bin.
SIGMA_MAP_KNOTS = 8
SIGMA_MAP_MIN = 30


def fit_sigma_scale_map(
    t_hat: np.ndarray, ln_ratio: np.ndarray, sigma: np.ndarray, n_knots: int = SIGMA_MAP_KNOTS
) -> dict[str, Any]:
    """:func:`sigma_scale_factor` in quantile bins of the network's estimate ``t_hat``.

    The head's σ ranks the clusters but its level can be off differently at low and high
    masses (measured: the validation coverage of one global scale runs from 0.59 to 0.80
    across bins of the estimated mass). One factor per bin of the *estimate* — a quantity
    known at run time, unlike the true mass — fitted on the validation clusters; the
    estimator interpolates it linearly in ``t_hat`` and holds it flat beyond the end knots
    (:func:`sigma_scales`). Bins with fewer than :data:`SIGMA_MAP_MIN` clusters are left out.

    Returns
    -------
    dict
        ``{"t": knots (bin medians of t_hat), "scale": factors, "n": clusters used}``.
    """
    t_hat, ln_ratio, sigma = (np.asarray(a, dtype=np.float64) for a in (t_hat, ln_ratio, sigma))
    ok = np.isfinite(t_hat) & np.isfinite(ln_ratio) & np.isfinite(sigma) & (sigma > 0)
    out: dict[str, Any] = {"t": [], "scale": [], "n": int(ok.sum())}
    if ok.sum() < SIGMA_MAP_MIN:
        return out
    t, r, sg = t_hat[ok], ln_ratio[ok], sigma[ok]
    edges = np.quantile(t, np.linspace(0.0, 1.0, n_knots + 1))
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        sel = (t >= lo) & ((t < hi) if k < n_knots - 1 else (t <= hi))
        if sel.sum() >= SIGMA_MAP_MIN:
            out["t"].append(float(np.median(t[sel])))
            out["scale"].append(sigma_scale_factor(r[sel], sg[sel]))
    return out


def sigma_scales(t_hat: np.ndarray, net: dict[str, Any]) -> np.ndarray:
    """The σ factor per estimate: the network's ``sigma_scale_map``, else its ``sigma_scale``."""
    t_hat = np.asarray(t_hat, dtype=np.float64)
    m = net.get("sigma_scale_map") or {}
    if len(m.get("t", [])) >= 1:
        return np.interp(t_hat, np.asarray(m["t"], float), np.asarray(m["scale"], float))
    return np.full(t_hat.shape, float(net.get("sigma_scale", 1.0)))


def fit_mu_calibration(t: np.ndarray, mu: np.ndarray, n_knots: int = 10) -> dict[str, list]:
    """The median network output ``g(t)`` in ``n_knots`` quantile bins of the true target.

    Fitted on the validation clusters: ``t = ln(M_true / M_PIVOT)`` and the head's ``μ``. Made
    strictly increasing (a running maximum plus 1e-4 per knot) so that it can be inverted:
    :func:`apply_mu_calibration` maps an output ``μ`` to the ``t`` whose median output it is,
    which removes the bias of the median *at fixed true mass* (what the acceptance bins
    measure) — the NLL-trained head leaves one where the data are noisy (low masses).
    """
    ok = np.isfinite(t) & np.isfinite(mu)
    t, mu = np.asarray(t)[ok], np.asarray(mu)[ok]
    edges = np.quantile(t, np.linspace(0.0, 1.0, n_knots + 1))
    tk, gk = [], []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        sel = (t >= lo) & ((t < hi) if k < n_knots - 1 else (t <= hi))
        if sel.sum() >= 5:
            tk.append(float(np.median(t[sel])))
            gk.append(float(np.median(mu[sel])))
    g = np.maximum.accumulate(np.asarray(gk)) + 1e-4 * np.arange(len(gk))
    return {"t": tk, "mu": [float(v) for v in g], "n": int(t.size)}


def apply_mu_calibration(mu: np.ndarray, cal: dict[str, list] | None) -> np.ndarray:
    """Invert :func:`fit_mu_calibration`'s ``g``: piecewise linear, extrapolated at both ends."""
    mu = np.asarray(mu, dtype=np.float64)
    if not cal:
        return mu
    g, t = np.asarray(cal["mu"], float), np.asarray(cal["t"], float)
    out = np.interp(mu, g, t)
    lo, hi = mu < g[0], mu > g[-1]
    out[lo] = t[0] + (mu[lo] - g[0]) * (t[1] - t[0]) / (g[1] - g[0])
    out[hi] = t[-1] + (mu[hi] - g[-1]) * (t[-1] - t[-2]) / (g[-1] - g[-2])
    return out


def acceptance(
    ln_cnn: np.ndarray,
    sigma: np.ndarray,
    m_true: np.ndarray,
    z: np.ndarray,
    ln_ysz: np.ndarray | None = None,
    floor: np.ndarray | None = None,
) -> dict[str, Any]:
    """Issue 15's acceptance numbers on the clusters within :data:`ACCEPT_M` × :data:`ACCEPT_Z`.

    Returns the CNN's residual statistics, the (mass × redshift) bins with their medians, the
    largest ``|median|`` among bins of ≥ :data:`MIN_BIN` clusters, the floor's standard
    deviation (``floor``: per-cluster :func:`~clusterfw.plugins.estimators.vgg_mass.data.
    ym_floor_residuals`) and the Y–M inversion's scatter on the same clusters.
    """
    sel = (
        (m_true >= ACCEPT_M[0]) & (m_true <= ACCEPT_M[1]) & (z >= ACCEPT_Z[0]) & (z <= ACCEPT_Z[1])
    )
    r, s, m, zz = ln_cnn[sel], sigma[sel], m_true[sel], z[sel]
    out: dict[str, Any] = {"cnn": residual_stats(r, s)}
    bins = binned_stats(r, m, zz, s)
    lm = np.log10(m)
    for lo in np.arange(14.0, 15.0, 0.25):
        for zlo in (0.1, 0.4, 0.7):
            b = (lm >= lo) & (lm < lo + 0.25 + (1e-9 if lo == 14.75 else 0))
            b &= (zz >= zlo) & (zz < zlo + 0.3 + (1e-9 if zlo == 0.7 else 0))
            row = {"by": "log10_m500c,z", "lo": float(lo), "hi": float(lo + 0.25)}
            row.update(zlo=zlo, zhi=round(zlo + 0.3, 2), **residual_stats(r[b], s[b]))
            bins.append(row)
    out["bins"] = bins
    full = [b for b in bins if b.get("n", 0) >= MIN_BIN]
    out["max_abs_bin_median"] = max((abs(b["median"]) for b in full), default=math.nan)
    out["bins_counted"] = len(full)
    # a median of n clusters scatters by s.e. = √(π/2) σ/√n (~0.02 for 150 clusters of σ 0.2):
    # bins whose |median| exceeds 0.02 by more than two standard errors
    out["bins_beyond_0.02_2se"] = [
        (b["by"], b["lo"], b.get("zlo"))
        for b in full
        if abs(b["median"]) > 0.02 + 2 * b["median_se"]
    ]
    if floor is not None:
        f = floor[sel]
        out["floor_std"] = float(np.std(f[np.isfinite(f)], ddof=1))
        out["cnn_over_floor"] = out["cnn"]["std"] / out["floor_std"]
    if ln_ysz is not None:
        b = ln_ysz[sel]
        both = np.isfinite(b) & np.isfinite(r)
        out["same_clusters"] = {
            "n": int(both.sum()),
            "cnn_std": float(np.std(r[both], ddof=1)),
            "ysz_std": float(np.std(b[both], ddof=1)),
            "cnn_robust": residual_stats(r[both])["robust_sigma"],
            "ysz_robust": residual_stats(b[both])["robust_sigma"],
        }
        sc = out["same_clusters"]
        sc["reduction"] = 1.0 - sc["cnn_std"] / sc["ysz_std"]
    return out


def _configure_tf(threads: int, seed: int) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hides spurious NodeDef errors
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process
        pass
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):
        pass
    return keras


def _predict(model: Any, x: np.ndarray, z: np.ndarray, batch: int = 256) -> np.ndarray:
    pred = model.predict(
        {"image": x, "z": z[:, None].astype(np.float32)}, batch_size=batch, verbose=0
    )
    return np.asarray(pred, dtype=np.float64)


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate and write ``cfg.out`` (see the module docstring); return the summary."""
    from clusterfw.core.atomic import atomic_dir
    from clusterfw.plugins.estimators.vgg_mass import data as data_mod
    from clusterfw.plugins.estimators.vgg_mass.model import beta_nll, build_model, gaussian_nll

    t0 = time.time()
    folders = [cfg.data] if isinstance(cfg.data, str | Path) else list(cfg.data)
    d = data_mod.load_many(
        folders, cfg.channels, rebin=cfg.rebin, limit=cfg.limit, keep_y=cfg.baseline
    )
    if cfg.z_range is not None:  # a de Andrés-style z-bin network: only the bin's cutouts
        d = data_mod.select(d, (d.z >= cfg.z_range[0]) & (d.z < cfg.z_range[1]))
    n = d.x.shape[0]
    split = data_mod.split_indices(n, cfg.seed, cfg.fractions)
    if min(len(v) for v in split.values()) < 2:
        from clusterfw.core.errors import InputError

        raise InputError(str(cfg.data), f"{n} samples are too few to split 70/15/15")
    t_all = data_mod.target(d.m500c).astype(np.float32)
    keras = _configure_tf(cfg.threads, cfg.seed)
    model = build_model(d.x.shape[1], cfg.channels, seed=cfg.seed)
    loss = beta_nll(cfg.beta_nll) if cfg.beta_nll > 0 else gaussian_nll
    model.compile(optimizer=keras.optimizers.Adam(cfg.lr), loss=loss)
    tr, va, te = split["train"], split["val"], split["test"]

    def inputs(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": d.x[idx], "z": d.z[idx, None].astype(np.float32)}

    name = stem(cfg.channels)
    names = {*OUTPUT_NAMES, f"{name}.weights.h5", f"{name}.json"}
    with atomic_dir(cfg.out, lambda e: e.name in names) as tmp:
        deadline = t0 + cfg.max_minutes * 60.0

        class _Budget(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                if time.time() > deadline:
                    self.model.stop_training = True

        class _Clock(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.t = time.time()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                if logs is not None:
                    logs["seconds"] = time.time() - self.t

        callbacks = [
            _Clock(),
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.patience, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(1, cfg.patience // 2), min_lr=1e-6
            ),
            keras.callbacks.CSVLogger(str(tmp / "metrics.csv")),
            _Budget(),
        ]
        stdout, sys.stdout = sys.stdout, sys.stderr  # Keras prints progress on stdout
        try:
            hist = model.fit(
                inputs(tr), t_all[tr], validation_data=(inputs(va), t_all[va]),
                epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True,
                callbacks=callbacks, verbose=2 if progress else 0,
            )  # fmt: skip
        finally:
            sys.stdout = stdout
        train_seconds = time.time() - t0
        val_losses = [float(v) for v in hist.history["val_loss"]]
        best_epoch = int(np.argmin(val_losses)) + 1
        evaluation: dict[str, Any] = {}
        pred_rows: list[str] = [
            "split,index,m500c_true,z,m500c_cnn,sigma_ln_cnn,m500c_ysz,sigma_ln_ysz"
        ]
        sigma_scale = 1.0
        sigma_map: dict[str, Any] = {}
        preds = {
            key: _predict(model, d.x[idx], d.z[idx]) for key, idx in (("val", va), ("test", te))
        }
        mu_cal = (
            fit_mu_calibration(data_mod.target(d.m500c[va]), preds["val"][:, 0])
            if cfg.median_calibration
            else None
        )
        for key, idx in (("val", va), ("test", te)):
            p = preds[key]
            raw_median = float(np.median(p[:, 0] - data_mod.target(d.m500c[idx])))
            p[:, 0] = apply_mu_calibration(p[:, 0], mu_cal)
            ln_ratio = p[:, 0] - data_mod.target(d.m500c[idx])
            if key == "val":  # calibrate σ on the validation clusters, apply to both
                sigma_scale = sigma_scale_factor(ln_ratio, p[:, 1])
                sigma_map = fit_sigma_scale_map(p[:, 0], ln_ratio, p[:, 1])
            raw_cov = residual_stats(ln_ratio, p[:, 1]).get("coverage68", math.nan)
            p[:, 1] *= sigma_scales(
                p[:, 0], {"sigma_scale": sigma_scale, "sigma_scale_map": sigma_map}
            )
            m_b = s_b = np.full(idx.size, np.nan)
            ev: dict[str, Any] = {
                "cnn": {
                    **residual_stats(ln_ratio, p[:, 1]),
                    "coverage68_raw": raw_cov,
                    "median_raw": raw_median,
                },
                "cnn_bins": binned_stats(ln_ratio, d.m500c[idx], d.z[idx], p[:, 1]),
            }
            if cfg.baseline and d.y_raw is not None:
                m_b, s_b = _baseline(d, idx)
                lb = np.log(m_b / d.m500c[idx])
                ev["ysz"] = residual_stats(lb, s_b / m_b)
                ev["ysz_bins"] = binned_stats(lb, d.m500c[idx], d.z[idx], s_b / m_b)
                both = np.isfinite(lb)
                ev["same_clusters"] = {
                    "n": int(both.sum()),
                    "cnn_std": float(np.std(ln_ratio[both], ddof=1)),
                    "ysz_std": float(np.std(lb[both], ddof=1)),
                }
            floor = None
            if "y500" in d.labels:
                floor = data_mod.ym_floor_residuals(d.m500c[idx], d.z[idx], d.labels["y500"][idx])
            ln_b = np.log(m_b / d.m500c[idx]) if "ysz" in ev else None
            ev["acceptance"] = acceptance(ln_ratio, p[:, 1], d.m500c[idx], d.z[idx], ln_b, floor)
            m_cnn = data_mod.mass_from_target(p[:, 0])
            pred_rows += [
                f"{key},{j},{d.m500c[j]:.6g},{d.z[j]:.5f},{m_cnn[k]:.6g},{p[k, 1]:.5f},"
                f"{m_b[k]:.6g},{s_b[k] / m_b[k]:.5f}"
                for k, j in enumerate(idx)
            ]
            if floor is not None:
                # the floor the simulator's Y–M scatter sets for a y-only estimate
                ev["ym_scatter_floor"] = float(np.std(floor, ddof=1))
            evaluation[key] = ev
        net_cfg = {
            "config_version": CONFIG_VERSION,
            "name": name,
            "channels": list(cfg.channels),
            "npix": int(d.x.shape[1]),
            "rebin": cfg.rebin,
            "pixel_arcmin": d.pixel_arcmin,
            "cutout_arcmin": d.pixel_arcmin * d.x.shape[1],
            "normalisation": {
                "y_scale": data_mod.Y_SCALE,
                "t_ref_s": data_mod.T_REF,
                "mstar_scale": data_mod.MSTAR_SCALE,
                "m_pivot": data_mod.M_PIVOT,
            },
            "z_range": [float(d.z.min()), float(d.z.max())],
            "m500c_range": [float(d.m500c.min()), float(d.m500c.max())],
            "ymap_preset": d.ymap_preset,
            "xray_preset": str(d.manifest.get("config", {}).get("xray_preset", "")),
            "setting": str(d.manifest.get("config", {}).get("setting", "default")),
            "sigma_scale": sigma_scale,
            "sigma_scale_map": sigma_map,
            "mu_calibration": mu_cal,
        }
        model.save_weights(str(tmp / f"{name}.weights.h5"))
        (tmp / f"{name}.json").write_text(json.dumps(net_cfg, indent=1) + "\n")
        (tmp / "predictions.csv").write_text("\n".join(pred_rows) + "\n")
        summary = {
            "config": {k: _jsonable(v) for k, v in asdict(cfg).items()},
            "network": net_cfg,
            "data": {
                "directory": ", ".join(str(f) for f in folders),
                "seed": ", ".join(
                    str(m.get("seed")) for m in d.manifest.get("folders", [d.manifest])
                ),
                "count": n,
                "sim_config": d.manifest.get("config", {}),
                "split": {k: int(len(v)) for k, v in split.items()},
            },
            "epochs_run": len(val_losses),
            "best_epoch": best_epoch,
            "best_val_loss": float(min(val_losses)),
            "history": {k: [float(x) for x in v] for k, v in hist.history.items()},
            "train_seconds": train_seconds,
            "evaluation": evaluation,
            "versions": _versions(),
        }
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
        from clusterfw.plugins.estimators.vgg_mass.card import model_card

        (tmp / "MODEL.md").write_text(model_card(summary, cfg.extra.get("command", "")))
    return summary


def _baseline(d: Any, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from clusterfw.plugins.estimators.vgg_mass.baseline import ysz_masses
    from clusterfw.sim import ymap

    preset = ymap.get_preset(d.ymap_preset)
    noise = preset.noise_y_arcmin / d.raw_pixel_arcmin
    m, s, _ = ysz_masses(d.y_raw[idx], d.z[idx], d.raw_pixel_arcmin, preset.beam_fwhm_arcmin, noise)
    return m, s


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("clusterfw", "tensorflow-cpu", "keras", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def recalibrate(run: str | Path) -> dict[str, Any]:
    """Fit the μ calibration and the σ scale of a finished run from its ``predictions.csv``.

    For runs whose :func:`train` predates those steps: the validation rows give
    :func:`fit_mu_calibration` and :func:`sigma_scale_factor` exactly as :func:`train` now
    fits them; the validation and test evaluations (the acceptance numbers, with the Y–M floor
    from the shards' ``y500`` labels) are recomputed; the network JSON, ``metrics.json`` (the
    previous evaluation kept as ``evaluation_uncalibrated``), ``predictions.csv`` and
    ``MODEL.md`` are rewritten (each atomically). Usage:
    ``python -m clusterfw.plugins.estimators.vgg_mass.train RUN_DIR``.
    """
    import csv

    from clusterfw.core.atomic import write_atomic
    from clusterfw.plugins.estimators.vgg_mass import data as data_mod
    from clusterfw.plugins.estimators.vgg_mass.card import model_card
    from clusterfw.sim.shards.common import iter_shards

    run = Path(run)
    summary = json.loads((run / "metrics.json").read_text())
    net = summary["network"]
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    col = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k != "split"}
    split = np.array([r["split"] for r in rows])
    mu = data_mod.target(col["m500c_cnn"])
    head = col["sigma_ln_cnn"] / sigma_scales(mu, net)
    t = data_mod.target(col["m500c_true"])
    va = split == "val"
    cal = fit_mu_calibration(t[va], mu[va])
    t_hat = apply_mu_calibration(mu, cal)
    r = t_hat - t
    scale = sigma_scale_factor(r[va], head[va])
    sigma_map = fit_sigma_scale_map(t_hat[va], r[va], head[va])
    sig = head * sigma_scales(t_hat, {"sigma_scale": scale, "sigma_scale_map": sigma_map})
    y500 = np.concatenate(
        [a["y500"] for f in summary["data"]["directory"].split(", ") for a in iter_shards(f)]
    )
    if summary["config"].get("z_range"):
        zall = np.concatenate(
            [a["z"] for f in summary["data"]["directory"].split(", ") for a in iter_shards(f)]
        )
        lo, hi = summary["config"]["z_range"]
        y500 = y500[(zall >= lo) & (zall < hi)]
    idx = col["index"].astype(int)
    floor = data_mod.ym_floor_residuals(col["m500c_true"], col["z"], y500[idx])
    ln_b = np.log(col["m500c_ysz"] / col["m500c_true"])
    evaluation = {}
    for key in ("val", "test"):
        s = split == key
        old = summary["evaluation"][key]
        ev = {k: v for k, v in old.items() if k.startswith("ysz") or k == "same_clusters"}
        ev["cnn"] = {
            **residual_stats(r[s], sig[s]),
            "coverage68_raw": residual_stats(r[s], head[s]).get("coverage68", math.nan),
            "median_raw": float(np.median(mu[s] - t[s])),
        }
        ev["cnn_bins"] = binned_stats(r[s], col["m500c_true"][s], col["z"][s], sig[s])
        has_b = bool(np.isfinite(ln_b[s]).any())
        ev["acceptance"] = acceptance(
            r[s], sig[s], col["m500c_true"][s], col["z"][s], ln_b[s] if has_b else None, floor[s]
        )
        ev["ym_scatter_floor"] = float(np.std(floor[s], ddof=1))
        evaluation[key] = ev
    summary["evaluation_uncalibrated"] = summary["evaluation"]
    summary["evaluation"] = evaluation
    net.update(sigma_scale=scale, sigma_scale_map=sigma_map, mu_calibration=cal)
    summary["recalibrated"] = (
        f"python -m clusterfw.plugins.estimators.vgg_mass.train {run} (μ calibration and σ "
        "scale fitted on the validation rows of predictions.csv after training)"
    )
    m_cal = data_mod.mass_from_target(t_hat)
    lines = ["split,index,m500c_true,z,m500c_cnn,sigma_ln_cnn,m500c_ysz,sigma_ln_ysz"]
    lines += [
        f"{split[k]},{idx[k]},{col['m500c_true'][k]:.6g},{col['z'][k]:.5f},{m_cal[k]:.6g},"
        f"{sig[k]:.5f},{col['m500c_ysz'][k]:.6g},{col['sigma_ln_ysz'][k]:.5f}"
        for k in range(len(rows))
    ]
    name = net["name"]
    command = summary["config"].get("extra", {}).get("command", "")
    write_atomic(run / f"{name}.json", lambda p: p.write_text(json.dumps(net, indent=1) + "\n"))
    write_atomic(run / "predictions.csv", lambda p: p.write_text("\n".join(lines) + "\n"))
    write_atomic(
        run / "metrics.json",
        lambda p: p.write_text(json.dumps(summary, indent=1, default=float) + "\n"),
    )
    card = model_card(summary, command) + f"\nRecalibrated by `{summary['recalibrated']}`.\n"
    write_atomic(run / "MODEL.md", lambda p: p.write_text(card))
    return summary


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        s = recalibrate(folder)
        a = s["evaluation"]["test"]["acceptance"]
        print(folder, json.dumps({k: v for k, v in a.items() if k != "bins"}, default=float))
