"""The model card (``MODEL.md``) written by ``clusterfw train vgg_mass`` from its summary."""

from __future__ import annotations

from typing import Any


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

Made by: `{command or "clusterfw train vgg_mass ..."}`

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

The simulator's Y–M scatter alone sets a floor of σ_lnY / B = 0.2 / 1.78 = 0.112 on a y-only
mass. Y–M: the aperture-Y inversion of `baseline.py` on the same cutouts.

### Validation, by bin
{_bins(va["cnn_bins"], va.get("ysz_bins"))}

## Limits
Trained only on `clusterfw.sim` cutouts (A10 profiles, white noise, no CMB/CIB residuals, toy
stellar mass); masses outside {net["m500c_range"][0]:.1e}–{net["m500c_range"][1]:.1e} Msun
or redshifts outside the range above are extrapolations (the estimator flags the latter).
"""
