"""The model card (``MODEL.md``) written by ``clusterfw train resnet`` from the run's summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_MASS_NAMES = {"mvir": "Mvir", "m500c": "M500c", "m200c": "M200c"}
_SETTING_NOTES = {
    "default": "the simulator's fixed parameters (A10 profiles, one source model)",
    "randomised": "every simulated patch draws its profile family (A10, Planck13, β-model, or a "
    "per-halo mix), concentration, Y–M normalisation and scatter, ellipticity, kSZ, source counts "
    "and spectral indices, cluster-member sources, per-band noise and beams "
    "(`clusterfw.sim.settings`)",
    "battaglia_hiradio": "Battaglia+12 profiles and a steep, flat-spectrum radio model, with the "
    "randomised instrument and nuisance draws",
}


def _cm_table(cm: dict[str, Any]) -> str:
    return (
        "| prediction \\ truth | has cluster | no cluster |\n|---|---:|---:|\n"
        f"| has cluster | {cm['tp']} | {cm['fp']} |\n| no cluster | {cm['fn']} | {cm['tn']} |\n\n"
        f"purity {cm['purity']:.3f}, completeness {cm['completeness']:.3f}, F1 {cm['f1']:.3f}"
    )


def write_model_card(
    summary: dict[str, Any], path: str | Path, command: str, notes: str | None = None
) -> Path:
    """Write the model card of a training run.

    Parameters
    ----------
    summary : dict
        What :func:`clusterfw.plugins.finders.resnet.train.train` returned.
    path : str or Path
        Output file.
    command : str
        The exact command line that produced the run.
    notes : str, optional
        Markdown appended under a ``## Notes`` heading (e.g. measurements made after training).

    Returns
    -------
    Path
    """
    from clusterfw.core.atomic import write_atomic

    c = summary["config"]
    d = summary["data"]
    ch = summary["chosen"]
    rows = "\n".join(
        f"| {e['ratio']} | {e['best_batch']} | {e['val_loss_at_ratio']:.4f} | "
        f"{e['val_loss_natural']:.4f} | {e['val_f1']:.3f} |"
        for e in summary["epochs"]
    )
    rel = "\n".join(
        f"| {b['bin'][0]:.1f}–{b['bin'][1]:.1f} | {b['n']} | "
        + (f"{b['mean_p']:.3f} | {b['frac_pos']:.3f} |" if b["n"] else "– | – |")
        for b in summary["test"]["reliability"]
    )
    split_notes = {
        "train": "96' patches, massive-halo abundance boosted ×6",
        "val": f"{d['val']['patch_arcmin']:.0f}' patches, 6' stride, natural ratio "
        f"{summary['natural_ratio_val']:.1f}:1",
        "test": "as val, other patches",
    }
    split_rows = "\n".join(
        f"| {k} | {d[k]['mode']} | {summary['n'][k]} | {summary['positives'][k]} "
        f"| {split_notes[k]} |"
        for k in ("train", "val", "test")
    )
    setting = c.get("setting", "default")
    labels = c.get("labels", "deepsz")
    zcut = f"z > {c['z_min']:g}" if c["z_min"] > 0 else "any redshift"
    mdef = _MASS_NAMES.get(c.get("mass_definition") or "mvir", c.get("mass_definition"))
    text = f"""# Model card: `resnet` finder weights

DeepSZ's ResNet cutout classifier (Lin et al. 2021, Fig. 3) as built by
`clusterfw.plugins.finders.resnet.model.DeepSZResNet`: two 3×3 stem convolutions (stride 1, 2)
with BN/ReLU and a max-pool, ResNet-50 bottleneck stages of 3, 4, 6 blocks, two FC layers of
{c.get("fc", 256)}, one logit. Width {c["width"]} (the paper's is 64; see `docs/finders/resnet.md`),
{summary["params"]:,} parameters, {summary["forward_mflop"]:.1f} MFLOP per cutout.
Weights stored as safetensors (float16; batch-norm statistics float32).

## How it was made
```
{command}
```
seed {c["seed"]}; torch {summary["torch"]}; {summary["seconds"]["total"] / 60:.1f} min wall
(of which {summary["seconds"]["data"] / 60:.1f} min simulating or loading the cached cutouts),
torch CPU threads: {c["threads"]}.

## Data (simulated by `clusterfw.sim`, all components, SPT-3G-like 95/150/220 GHz)
Setting: `{setting}` — {_SETTING_NOTES.get(setting, "see docs/simulator.md")}.
Labels `{labels}`: positive when a halo with {mdef} ≥ {c["mass_cut"]:.3g} Msun ({zcut}) lies
in the central 6'×6' of the 8'×8' (32×32 px at 0.25') cutout. Splits come from disjoint simulated
patches (separate seed streams per split).

| split | mode | cutouts | positives | notes |
|---|---|---:|---:|---|
{split_rows}

Normalisation: `arcsinh((x − cutout median) / s_b)` with fixed per-band scales
s = {", ".join(f"{s:.2f}" for s in summary["scales_uk"])} µK (robust σ of training pixels).

## Training (dynamic stratified sampling)
SGD (momentum {c["momentum"]}, weight decay {c["weight_decay"]}), batch {c["batch_size"]}, peak
learning rate {c["lr"]} with linear warm-up from a third of it over the first
{c["warmup_fraction"]:.0%} of each epoch and a ten-fold drop after {c["decay_fraction"]:.0%} of it;
{c["first_epoch_batches"]} batches for r = 1,
at most {c["max_batches"]} for the later ratios; validation loss at ratio r every
{c["eval_every"]} batches, patience {c["patience"]}; dihedral augmentation.

| ratio r | best batch | val loss at r | val loss (natural) | val F1 (best threshold) |
|---:|---:|---:|---:|---:|
{rows}

Chosen: the r = {ch["ratio"]} checkpoint (highest F1 on the full validation set).

## Calibration (Platt scaling on the validation logits)
p = sigmoid({summary["platt"]["a"]:.4f} · logit + {summary["platt"]["b"]:.4f}); stored in
`platt.json`. F1-best threshold on validation: p ≥ {summary["threshold_probability"]:.3f}.

## Metrics (cutout level, threshold picked on validation)
Validation (F1 {summary["val"]["best_f1"]:.3f}, average precision
{summary["val"]["average_precision"]:.3f}, Brier {summary["val"]["brier"]:.4f}):

{_cm_table(summary["val"])}

Test (average precision {summary["test"]["average_precision"]:.3f}, Brier
{summary["test"]["brier"]:.4f}):

{_cm_table(summary["test"])}

Reliability of the calibrated probabilities on the test cutouts:

| p bin | cutouts | mean p | fraction positive |
|---|---:|---:|---:|
{rel}

## Limits
Trained on simulations only (no scan filtering, 1/f noise or galactic dust); valid for three
bands near 95/150/220 GHz on 0.25' pixels; the probability refers to the mass and redshift cut
above and to the natural abundance of the simulator (and, for `randomised`, to the mixture of
its settings).
"""
    if notes:
        text += f"\n## Notes\n{notes.strip()}\n"
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
