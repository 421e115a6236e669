"""The model card (``MODEL.md``) written by ``clusterfw train vgg_mass`` from its summary."""

from __future__ import annotations

from typing import Any

import numpy as np


def _fmt(x: Any, spec: str = ".3f") -> str:
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return "–"


def _bins(rows: list[dict[str, Any]], base: list[dict[str, Any]] | None) -> str:
    out = [
        "| bin | n | CNN median ln(M/M_true) | CNN σ | CNN 68 % coverage | Y–M σ |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows):
        b = base[i] if base else {}
        label = (
            f"log10 M {r['lo']:.2f}–{r['hi']:.2f}" if r["by"] == "log10_m500c"
            else f"z {r['lo']:.1f}–{r['hi']:.1f}"
        )  # fmt: skip
        out.append(
            f"| {label} | {r['n']} | {_fmt(r.get('median'), '+.3f')} | {_fmt(r.get('std'))} | "
            f"{_fmt(r.get('coverage68'), '.2f')} | {_fmt(b.get('std'))} |"
        )
    return "\n".join(out)


def _acceptance(acc: dict[str, Any] | None) -> str:
    if not acc:
        return ""
    cnn = acc["cnn"]
    lines = [
        "### Acceptance (test clusters with M500c 1e14–1e15 Msun and z 0.1–1)",
        "",
        f"- n = {cnn.get('n')}; median ln(M/M_true) {_fmt(cnn.get('median'), '+.3f')}, std "
        f"{_fmt(cnn.get('std'))}, robust σ {_fmt(cnn.get('robust_sigma'))}, 68 % coverage "
        f"{_fmt(cnn.get('coverage68'), '.3f')}",
        f"- largest |median| over the {acc.get('bins_counted')} bins (mass, z, mass × z) with "
        f"≥ 30 clusters: {_fmt(acc.get('max_abs_bin_median'))}; bins beyond 0.02 by more than "
        f"two standard errors: {len(acc.get('bins_beyond_0.02_2se', []))}",
    ]
    if "floor_std" in acc:
        lines.append(
            f"- Y–M floor (std of (ln Y500 − ln Y(M,z))/B, the relation as simulated, drawn "
            f"normalisation and scatter included): {_fmt(acc['floor_std'])}; CNN std / floor "
            f"= {_fmt(acc.get('cnn_over_floor'), '.2f')}"
        )
    sc = acc.get("same_clusters")
    if sc:
        lines.append(
            f"- same {sc['n']} clusters: CNN std {_fmt(sc['cnn_std'])} vs Y–M inversion "
            f"{_fmt(sc['ysz_std'])} ({100 * sc['reduction']:.0f} % lower); robust σ "
            f"{_fmt(sc['cnn_robust'])} vs {_fmt(sc['ysz_robust'])}"
        )
    rows = [b for b in acc.get("bins", []) if b["by"] == "log10_m500c,z"]
    if rows:
        lines += [
            "",
            "| log10 M | z | n | median ± s.e. | std | coverage |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for b in rows:
            lines.append(
                f"| {b['lo']:.2f}–{b['hi']:.2f} | {b['zlo']:.1f}–{b['zhi']:.1f} | {b['n']} | "
                f"{_fmt(b.get('median'), '+.3f')} ± {_fmt(b.get('median_se'))} | "
                f"{_fmt(b.get('std'))} | {_fmt(b.get('coverage68'), '.2f')} |"
            )
    return "\n".join(lines)


def model_card(summary: dict[str, Any], command: str) -> str:
    """Markdown text of the model card of one training run (numbers from ``summary``)."""
    c, net, d = summary["config"], summary["network"], summary["data"]
    va = summary["evaluation"]["val"]
    te = summary["evaluation"]["test"]
    smoke = c.get("extra", {}).get("smoke", False)
    label = (
        "**SMOKE RUN** — a short training on a small shard set to check that the network, the "
        "loss and the pipeline work. These weights are *not* the estimator's final weights and "
        "must not be used for science."
        if smoke
        else "Training run."
    )
    rows = []
    for key, ev in (("validation", va), ("test", te)):
        cnn, ysz = ev["cnn"], ev.get("ysz", {})
        rows.append(
            f"| {key} | {cnn['n']} | {_fmt(cnn.get('median'), '+.3f')} | {_fmt(cnn.get('std'))} "
            f"| {_fmt(cnn.get('robust_sigma'))} | {_fmt(cnn.get('coverage68'), '.2f')} "
            f"| {_fmt(ysz.get('median'), '+.3f')} | {_fmt(ysz.get('std'))} "
            f"| {_fmt(ysz.get('robust_sigma'))} |"
        )
    table = "\n".join(rows)
    chans = ", ".join(net["channels"])
    grid = (
        f'{net["npix"]}×{net["npix"]} pixels of {net["pixel_arcmin"] * 60:.0f}" '
        f"({net['cutout_arcmin']:.0f}' cutouts, rebin {net['rebin']})"
    )
    versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
    sp = d["split"]
    training = "\n".join(
        [
            f"- shards: `clusterfw simulate mass-cutouts` at `{d['directory']}` (seed "
            f"{d['seed']}, {d['count']} cutouts; y preset `{net['ymap_preset']}`, X-ray preset "
            f"`{net['xray_preset']}`)",
            f"- M500c {net['m500c_range'][0]:.3g}–{net['m500c_range'][1]:.3g} Msun, "
            f"z {net['z_range'][0]:.2f}–{net['z_range'][1]:.2f}",
            f"- split (seed {c['seed']}): train {sp['train']}, validation {sp['val']}, test "
            f"{sp['test']} (independent lines of sight)",
            f"- Adam, lr {c['lr']:g}, batch {c['batch_size']}; {summary['epochs_run']} epochs "
            f"run, best {summary['best_epoch']} (validation NLL {summary['best_val_loss']:.4f}); "
            f"early-stopping patience {c['patience']}",
            f"- {summary['train_seconds'] / 60:.1f} min wall time (loading included) on "
            f"{c['threads']} CPU threads; {versions}",
        ]
    )
    return f"""# Model card: `{net["name"]}` (vgg_mass estimator)

{label}

Made by: `{command or "clusterfw train vgg_mass ..."}`{_recalibrated(summary, net)}

## What it is
Yan et al. (2020) VGG (3×3 convolutions of 16/32/64 filters with 2×2 average pooling per
channel, fully connected 200-100-100-20, 10 % dropout), redshift as an input, a mean-and-variance
head trained with the Gaussian NLL on ln(M500c / 3e14 Msun). Channels: {chans}; input {grid}.
Normalisation: y / {net["normalisation"]["y_scale"]:g};
asinh(counts × {net["normalisation"]["t_ref_s"]:g} s / exposure);
asinh(M* / {net["normalisation"]["mstar_scale"]:g} Msun).

## Training data
{training}

## Measured (ln M500c residuals, held-out clusters)

| split | n | CNN median | CNN std | CNN robust σ | CNN 68 % cov. | Y–M median | Y–M std | Y–M rσ |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{table}

σ is the head's σ times a factor fitted on the validation clusters so that 68.27 % of them lie
within ±σ (the test coverage is then a check): {_sigma_text(net)}; the raw head's test
coverage was {_fmt(te["cnn"].get("coverage68_raw"), ".2f")}.
Y–M: the aperture-Y inversion of `baseline.py` on the same cutouts.

{_acceptance(te.get("acceptance"))}

### Validation, by bin
{_bins(va["cnn_bins"], va.get("ysz_bins"))}

## Limits
Trained only on `clusterfw.sim` cutouts (setting `{net.get("setting", "default")}`; white noise,
no CMB/CIB residuals in the y maps, toy stellar mass); masses outside
{net["m500c_range"][0]:.1e}–{net["m500c_range"][1]:.1e} Msun or redshifts outside the range
above are extrapolations (the estimator flags the latter).
"""


def _sigma_text(net: dict[str, Any]) -> str:
    """How σ is scaled: the per-bin map of the estimate, or the single ``sigma_scale``."""
    from clusterfw.plugins.estimators.vgg_mass.data import mass_from_target

    m = net.get("sigma_scale_map") or {}
    if m.get("t"):
        masses = mass_from_target(np.asarray(m["t"], dtype=np.float64))
        pairs = ", ".join(
            f"{mm:.2g} Msun: {s:.2f}" for mm, s in zip(masses, m["scale"], strict=True)
        )
        return f"one factor per quantile bin of the estimated mass ({pairs})"
    return f"`sigma_scale` = {_fmt(net.get('sigma_scale', 1.0))}"


def _recalibrated(summary: dict[str, Any], net: dict[str, Any]) -> str:
    """A sentence on the post-training calibration, when ``recalibrate`` was run."""
    if not summary.get("recalibrated"):
        return ""
    median = " and an inverse-median map of the output" if net.get("mu_calibration") else ""
    return (
        f"\n\nThen: `{summary['recalibrated'].split(' (')[0]}` — the σ factors{median} fitted "
        "on the validation rows of `predictions.csv` (the numbers below are after it)."
    )
