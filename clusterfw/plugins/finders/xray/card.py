"""The model card (``MODEL.md``) written by ``clusterfw train xray`` from the run's summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_NAMES = {"xray": "X-ray only", "optical": "optical only", "both": "X-ray + optical"}


def _optimizer(c: dict[str, Any]) -> str:
    if c.get("optimizer", "sgd") == "sgd":
        return f"SGD with Nesterov momentum {c['momentum']} (Kosiba's)"
    return (
        "AdamW (Kosiba used SGD with Nesterov momentum 0.9 for 153 000 iterations; in a "
        "few-hundred-step trial it left the loss at its start, AdamW did not)"
    )


def metrics_table(summary: dict[str, Any], key: str = "test_balanced") -> str:
    """Kosiba's table (accuracy, precision, recall, AUC ± bootstrap σ) for every network."""
    rows = []
    for mode, m in summary["modes"].items():
        t = m[key]
        rows.append(
            f"| {_NAMES.get(mode, mode)} | {t['accuracy']:.3f} ± {t['accuracy_std']:.3f} | "
            f"{t['precision']:.3f} ± {t['precision_std']:.3f} | "
            f"{t['recall']:.3f} ± {t['recall_std']:.3f} | {t['auc']:.3f} ± {t['auc_std']:.3f} | "
            f"{t['n']} ({t['positives']}) |"
        )
    head = (
        "| network | accuracy | precision | recall | AUC | candidates (positives) |\n"
        "|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows)


def write_model_card(summary: dict[str, Any], path: str | Path, command: str) -> Path:
    """Write ``MODEL.md`` for a training run.

    Parameters
    ----------
    summary : dict
        What :func:`clusterfw.plugins.finders.xray.train.train` returned.
    path : str or Path
    command : str
        The exact command line of the run.
    """
    from clusterfw.core.atomic import write_atomic

    c = summary["config"]
    d = summary["data"]
    split_rows = "\n".join(
        f"| {s} | {c[s + '_fields']} | {d[s]['fields']} | {d[s]['candidates']} | "
        f"{d[s]['positives']} | {' / '.join(str(k) for k in d[s]['kinds'])} |"
        for s in ("train", "val", "test")
    )
    per_mode = "\n".join(
        f"| {_NAMES.get(m, m)} | {v['best_epoch']} of {v.get('epochs_run', c['epochs'])} | "
        f"{v['val_auc']:.3f} | "
        f"{v['platt']['a']:.3f} | {v['platt']['b']:.3f} | {v['threshold_balanced']:.3f} | "
        f"{v['seconds'] / 60:.1f} |"
        for m, v in summary["modes"].items()
    )
    kinds = "\n".join(
        f"| {_NAMES.get(m, m)} | "
        + " | ".join(f"{v['test_by_kind_mean_p'][k]:.3f}" for k in
                     ("fluctuation", "agn", "group", "cluster"))
        + " |"
        for m, v in summary["modes"].items()
    )  # fmt: skip
    esize = int(c.get("epoch_size", 0))
    limit = float(c.get("max_minutes", 0.0))
    limit_text = f" (at most {limit:g} min of epochs per network)" if limit > 0 else ""
    epoch_text = (
        f"{esize} samples (half positives, half negatives, drawn afresh)"
        if esize
        else "every sample of the rarer class + as many fresh random ones of the other"
    )
    label = c.get("label", "mass")
    if label == "real":
        label_text = (
            "labelled **real** (1) when matched to a halo of M500c ≥ 3e13 Msun (every halo the "
            "simulator draws: groups and clusters, like Kosiba's spectroscopically confirmed XXL "
            "clusters, groups included) within max(1', θ500/2) whose expected counts are at "
            "least those of the brightest AGN within one PSF FWHM, else **not** (0: point "
            "sources/AGN and background fluctuations, like the candidates Kosiba's experts "
            "rejected); kinds fluctuation / AGN (incl. halo matches an AGN outshines) / group "
            "(3e13–1e14) / cluster (≥ 1e14)"
        )
        prob_text = "real group or cluster emission among X-ray detections of the simulator's mix"
    else:
        label_text = (
            "labelled cluster (a halo with M500c ≥ 1e14 Msun within max(1', θ500/2)) or not "
            "(kinds: fluctuation / AGN / group below the cut)"
        )
        prob_text = "M500c ≥ 1e14 Msun among X-ray detections of the simulator's mix"
    draws = int(c.get("draws", 1))
    boost = float(c.get("abundance_boost", 25.0))
    draws_text = (
        f"; {draws} X-ray skies (AGN, background, Poisson counts) drawn per field of halos, all "
        "with the field's one optical render"
        if draws > 1
        else ""
    )
    draw0 = ""
    corr = (
        " With several X-ray draws per field the test candidates are not independent (a halo "
        "recurs in every draw of its field, all from few fields), so these σ are lower bounds; "
        "the one-draw table's are not."
        if draws > 1
        else ""
    )
    if all(m.get("test_balanced_draw0") for m in summary["modes"].values()) and draws > 1:
        draw0 = (
            "Only the first X-ray draw of each test field (no halo seen twice; balanced):\n\n"
            + metrics_table(summary, "test_balanced_draw0")
            + "\n\n"
        )
    text = f"""# Model card: `xray` finder classifiers

Kosiba's custom CNN (Table 3) as built by `clusterfw.plugins.finders.xray.model.KosibaCNN`:
six 3×3 convolution + 2×2 max-pool stages (64, then 32 filters; ReLU), dense 256, dropout
0.65, two softmax outputs; inputs 32×32 pixels of 8" (4.3'). Three networks: X-ray only
(2 channels: asinh counts, asinh of the smoothed Poisson significance), optical only (g, r, i,
asinh-scaled with per-band scales {", ".join(f"{s:.4f}" for s in summary["optical_scales"])}
nanomaggies per 8" pixel) and both (5 channels). torch {summary["torch"]}; float32
safetensors.

## How it was made
```
{command}
```
seed {c["seed"]}; {summary["seconds"]["total"] / 60:.1f} min wall (of which
{summary["seconds"]["data"] / 60:.1f} min simulating or loading candidates); torch threads
{c["threads"]}.

## Data (`clusterfw.plugins.finders.xray.data`)
0.5° eROSITA-like X-ray fields (`clusterfw.sim.xray`, 2 ks, 30" PSF; halos above 3e13 Msun,
those above 5e13 Msun {boost:g}× as abundant as the Tinker08 mass function, z < 1.2; AGN from
the Georgakakis+08 logN–logS{draws_text}) searched by a 30" Gaussian significance map
(S ≥ 5); each candidate {label_text}. Optical: the same sky in DES-depth g, r, i rendered at
2" and summed to 8". Splits are disjoint simulated skies (seeds 3·seed + 1, 2, 3).

| split | fields | fields used | candidates | positives | kinds (fluct. / AGN / group / cluster) |
|---|---|---:|---:|---:|---|
{split_rows}

## Training
{_optimizer(c)}, learning rate {c["lr"]} (× {c["plateau_factor"]}
after {c["plateau_patience"]} epochs without a lower validation loss), weight decay
{c["weight_decay"]}, batch {c["batch_size"]}, {c["epochs"]} epochs{limit_text} of {epoch_text};
augmentation {"on" if c["augment"] else "off"} (shifts ±32", 8 flips/rotations, Poisson
thinning of the counts to 35–100 % of the exposure, extra optical sky noise). Kept: the epoch
of best validation AUC. Platt scaling on the validation candidates (natural mix); threshold
for accuracy: best balanced accuracy on validation.

| network | best epoch (of run) | val AUC | Platt a | Platt b | threshold | minutes |
|---|---:|---:|---:|---:|---:|---:|
{per_mode}

## Test metrics (held-out skies; balanced: every sample of the rarer class, as many of the other)
{metrics_table(summary, "test_balanced")}

All test candidates (natural mix of the simulated detections):

{metrics_table(summary, "test_natural")}

{draw0}Mean probability on the test candidates by kind:

| network | fluctuation | AGN | group | cluster |
|---|---:|---:|---:|---:|
{kinds}

(± are bootstrap standard deviations over the test candidates; Kosiba's are over folds.{corr})

## Limits
Simulated skies only (β-models, Gaussian PSF, no cool cores or mergers, representative
backgrounds); trained on eROSITA-like 4" pixels and 2 ks (the finder resamples other pixels to
8"); the probability refers to {prob_text}.
"""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
