"""The model card (``MODEL.md``) written by ``clusterfw train frcnn`` from the run's summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _row(name: str, r: dict[str, Any]) -> str:
    return (
        f"| {name} | {r['threshold']:.3f} | {r['tp']} | {r['fp']} | {r['fn']} | "
        f"{r['purity']:.3f} | {r['completeness']:.3f} | **{r['f1']:.3f}** |"
    )


def write_model_card(
    summary: dict[str, Any], path: str | Path, command: str, extra: str = ""
) -> Path:
    """Write the model card of a training run (atomically).

    Parameters
    ----------
    summary : dict
        What :func:`clusterfw.plugins.finders.frcnn.train.train` returned.
    path : str or Path
        Output file.
    command : str
        The command line that produced the run.
    extra : str
        Markdown appended at the end (e.g. the finder's held-out numbers).
    """
    from clusterfw.core.atomic import write_atomic

    c = summary["config"]
    start = (
        f"warm restart from `{Path(c['init']).name}`, itself trained from random weights"
        if c.get("init")
        else "from random weights"
    )
    sched = (
        f"cosine from {c['lr']} to {c.get('lr_min')} over the planned {c['epochs']} epochs"
        if c.get("schedule", "plateau") == "cosine"
        else f"{c['lr']}, ×0.3 after two epochs without a better validation F1"
    )
    secs = summary["epoch_seconds"]
    text = f"""# frcnn — Faster R-CNN cluster finder on g, r, i images (model card)

Trained by this project's own command ({start}; nothing downloaded):

```
{command}
```

- seed {c["seed"]}; torch threads {c["threads"]}; {summary["epochs_run"]} epochs run in
  {summary["minutes"]} min wall (mean {sum(secs) / max(1, len(secs)):.0f} s of training per
  epoch on this shared 2-core machine); best epoch by validation F1 (1'):
  **{summary["best_epoch"]}**.
- Data: `clusterfw simulate optical-fields --preset des-coarse --rebin 2` (DES depth and seeing,
  0.526" pixels summed to 1.052", 0.2° fields, M500c ≥ 1e14 Msun clusters at 0.05 < z < 0.7
  labelled, seeing × U(0.85, 1.25) and depth + U(−0.5, 0.3) mag per field):
  {summary["n_fields"]["train"]} training fields (seeds {
        ", ".join(Path(p).name for p in summary["fields"]["train"])
    }), {summary["n_fields"]["val"]} validation (seed 20·seed+1),
  {summary["n_fields"]["test"]} test (seed 30·seed+1); independent skies.
- Box rule (the simulator's): a square box centred on the halo's true centre holding 80 % of
  its bright members (r < m*(z) + 2) in Chebyshev distance, R500 with fewer than 5 of them, at
  least 2 PSF FWHM, clipped to the field{
        "; then moved, its size kept, onto the cluster's simulated BCG (`--box-centre bcg`, "
        "Deep-CEE's ground truth)" if c.get("box_centre", "halo") == "bcg" else ""
    }.
- Model: torchvision FasterRCNN, trunk width {c["width"]}, windows {c["window"]}² px at 4.208"
  (asinh stretch, softening 0.2 nanomaggy), AdamW lr {sched}, batch {c["batch_size"]}.
- Calibration: Platt a = {summary["platt"]["a"]:.4f}, b = {summary["platt"]["b"]:.4f} on
  {summary["platt"]["n_fit"]} validation detections ({summary["platt"]["n_positive"]} matched
  within 1'); validation-picked threshold p ≥ {summary["threshold_probability"]:.3f}.

## Detection on the central window of each field (box centres, greedy match)

| set | p threshold | TP | FP | FN | purity | completeness | F1 |
|---|---:|---:|---:|---:|---:|---:|---:|
{_row("validation, 1'", summary["val_1arcmin"])}
{_row("test, 1'", summary["test_1arcmin"])}
{_row("test, 100 kpc", summary["test_100kpc_box_centre"])}

The finder's own numbers (windows over whole tiles, red-sequence centring, photo-z) are in
docs/finders/frcnn.md. Per-epoch losses and validation numbers: `metrics.jsonl`.

```json
{json.dumps({k: summary[k] for k in ("best_epoch", "epochs_run", "threshold_probability")})}
```
{extra}"""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))
