"""Registers the ``resnet`` finder and the ``clusterfw train resnet`` and
``clusterfw train resnet-position`` commands.

Entry point ``resnet`` in the ``clusterfw`` group. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

import click

from clusterfw.core.cli import FiniteFloat
from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.train_cli import add_train_commands, rebuilt_command_line
from clusterfw.plugins.finders.resnet.finder import ResNetFinder

#: Simulator settings and label presets of ``train resnet`` (literal, so the CLI stays light;
#: a test checks them against :data:`clusterfw.sim.settings.SETTINGS` and
#: :data:`clusterfw.sim.cutouts.LABELS`).
SETTING_NAMES = ("randomised", "default", "battaglia_hiradio")
LABEL_NAMES = ("sz", "deepsz")


@hookimpl(trylast=True)
def clusterfw_register_finders(register: Any) -> None:
    """Register :class:`ResNetFinder`."""
    register(ResNetFinder)


@click.command("resnet")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    required=True,
    help="Output folder (weights, platt.json, metrics.jsonl, MODEL.md).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Seed of data and training.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Cache of simulated cutouts (default OUT/data).",
)
@click.option(
    "--setting",
    type=click.Choice(SETTING_NAMES),
    default="randomised",
    show_default=True,
    help="Simulator setting of every split: randomised (the training mixture: profile family, "
    "Y-M, sources, noise, beams drawn per patch), default (fixed parameters, the first shipped "
    "model's) or battaglia_hiradio (the held-out test setting; not for training).",
)
@click.option(
    "--labels",
    type=click.Choice(LABEL_NAMES),
    default="sz",
    show_default=True,
    help="Positive cutouts: sz (a halo with M500c >= 1.5e14 Msun at any z in the central 6') "
    "or deepsz (Mvir >= 2e14 Msun and z > 0.25, the paper's).",
)
@click.option(
    "--width",
    type=click.IntRange(min=1, max=1024),
    default=32,
    show_default=True,
    help="Network width (paper: 64).",
)
@click.option(
    "--n-train",
    type=click.IntRange(min=2, max=10_000_000),
    default=120_000,
    show_default=True,
    help="Training cutouts.",
)
@click.option(
    "--positive-fraction",
    type=FiniteFloat(min=0.0, max=1.0, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="Positives among the simulated training cutouts.",
)
@click.option(
    "--val-patches",
    type=click.IntRange(min=1, max=10_000),
    default=8,
    show_default=True,
    help="4°x4° validation patches (natural ratio).",
)
@click.option(
    "--test-patches",
    type=click.IntRange(min=1, max=10_000),
    default=6,
    show_default=True,
    help="4°x4° test patches.",
)
@click.option(
    "--grid-patch-arcmin",
    type=FiniteFloat(min=8.0, max=3600.0),
    default=240.0,
    show_default=True,
    help="Side of the validation/test patches.",
)
@click.option(
    "--ratios",
    default="1,2,4,6,9,13",
    show_default=True,
    help="Negative:positive ratio of each epoch.",
)
@click.option("--batch-size", type=click.IntRange(min=1, max=65536), default=64, show_default=True)
@click.option("--first-epoch-batches", type=click.IntRange(min=1), default=1500, show_default=True)
@click.option(
    "--max-batches",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Batch limit of the later epochs.",
)
@click.option(
    "--lr",
    type=FiniteFloat(min=0.0, min_open=True, max=10.0),
    default=2e-2,
    show_default=True,
    help="Peak learning rate.",
)
@click.option("--weight-decay", type=FiniteFloat(min=0.0, max=1.0), default=3e-3, show_default=True)
@click.option(
    "--warmup-fraction",
    type=FiniteFloat(min=0.0, max=1.0),
    default=0.2,
    show_default=True,
    help="Warm-up length, fraction of an epoch.",
)
@click.option(
    "--decay-fraction",
    type=FiniteFloat(min=0.0, max=1.0),
    default=0.5,
    show_default=True,
    help="Ten-fold learning-rate drop after this fraction of an epoch.",
)
@click.option("--eval-every", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=1, max=1024),
    default=1,
    show_default=True,
    help="torch CPU threads (1 is fastest on a shared machine).",
)
@click.option(
    "--scale-mode",
    type=click.Choice(["common", "per_band"]),
    default="per_band",
    show_default=True,
    help="Normalisation scale: one for all bands, or per band.",
)
@click.option(
    "--scale-multiplier",
    type=FiniteFloat(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Normalisation scale = this x the robust sigma of training pixels.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_resnet(
    out: str,
    seed: int,
    data_dir: str | None,
    setting: str,
    labels: str,
    width: int,
    n_train: int,
    positive_fraction: float,
    val_patches: int,
    test_patches: int,
    grid_patch_arcmin: float,
    ratios: str,
    batch_size: int,
    first_epoch_batches: int,
    max_batches: int,
    lr: float,
    weight_decay: float,
    warmup_fraction: float,
    decay_fraction: float,
    eval_every: int,
    patience: int,
    threads: int,
    scale_mode: str,
    scale_multiplier: float,
    quiet: bool,
) -> None:
    """Train the resnet finder on simulated cutouts (DeepSZ dynamic stratified sampling)."""
    from pathlib import Path

    from clusterfw.core.atomic import check_writable, refuse_overwrite
    from clusterfw.core.errors import PluginError

    try:
        ratio_list = tuple(int(r) for r in ratios.split(","))
    except ValueError:
        raise PluginError(f"--ratios: expected comma-separated integers, got {ratios!r}") from None
    if not ratio_list or min(ratio_list) < 1 or max(ratio_list) > 1000:
        raise PluginError(f"--ratios: expected integers from 1 to 1000, got {ratios!r}")
    # everything is checked before any simulation: a bad argument found after minutes of
    # simulation used to leave a half-written folder
    out_dir = Path(out)
    check_writable(out_dir, folder=True)
    if data_dir is not None:
        check_writable(Path(data_dir), folder=True)
        # the data cache is read and written in place; only the model files must not land on it
        refuse_overwrite(
            [Path(data_dir)],
            [out_dir / name for name in ("resnet.safetensors", "platt.json", "MODEL.md")],
        )
    from clusterfw.plugins.finders.resnet.card import write_model_card
    from clusterfw.plugins.finders.resnet.train import TrainConfig, train

    cfg = TrainConfig(
        out=Path(out), seed=seed, data_dir=Path(data_dir) if data_dir else None,
        setting=setting, labels=labels, width=width,
        n_train=n_train, train_positive_fraction=positive_fraction, n_val_patches=val_patches,
        n_test_patches=test_patches, grid_patch_arcmin=grid_patch_arcmin, ratios=ratio_list,
        batch_size=batch_size,
        first_epoch_batches=first_epoch_batches, max_batches=max_batches, lr=lr,
        weight_decay=weight_decay, warmup_fraction=warmup_fraction, decay_fraction=decay_fraction,
        eval_every=eval_every, patience=patience, threads=threads, scale_mode=scale_mode,
        scale_multiplier=scale_multiplier,
    )  # fmt: skip
    command = rebuilt_command_line(
        click.get_current_context(), always=("out", "seed", "setting", "labels")
    )
    summary = train(cfg, progress=not quiet)
    write_model_card(summary, Path(out) / "MODEL.md", command)
    t = summary["test"]
    click.echo(
        f"wrote {out}/resnet.safetensors; test F1 {t['f1']:.3f} (purity {t['purity']:.3f}, "
        f"completeness {t['completeness']:.3f}) at p ≥ {summary['threshold_probability']:.3f}",
        err=True,
    )


@click.command("resnet-position")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True),
    required=True,
    help="The classifier (resnet.safetensors) whose features the head reads; it stays frozen.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True),
    required=True,
    help="Cutout cache of `clusterfw train resnet` (train, val, test folders).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Folder for position.safetensors (put it beside the weights to use it).",
)
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--variants",
    type=click.IntRange(min=1, max=8),
    default=2,
    show_default=True,
    help="Dihedral orientations of each training positive.",
)
@click.option("--hidden", type=click.IntRange(min=1, max=4096), default=256, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1, max=1000), default=12, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=1, max=1024),
    default=1,
    show_default=True,
    help="torch CPU threads.",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def train_resnet_position(
    weights: str,
    data_dir: str,
    out: str,
    seed: int,
    variants: int,
    hidden: int,
    epochs: int,
    threads: int,
    quiet: bool,
) -> None:
    """Train the resnet position head (cluster offset in a cutout) on the frozen classifier."""
    from pathlib import Path

    from clusterfw.core.atomic import check_writable
    from clusterfw.core.errors import InputError

    data = Path(data_dir)
    for split in ("train", "val", "test"):
        if not any((data / split).glob("*.npz")):
            raise InputError(
                data_dir, f"no {split} cutouts (make them with clusterfw train resnet)"
            )
    check_writable(Path(out), folder=True)
    from clusterfw.plugins.finders.resnet.position import train_position

    s = train_position(
        Path(weights), data, Path(out), seed=seed, variants=variants, hidden=hidden,
        epochs=epochs, threads=threads, progress=not quiet,
    )  # fmt: skip
    v, t, g = s["val"], s["test"], s["test_grid_centre"]
    click.echo(
        f"wrote {out}/position.safetensors; test cutouts: median error {t['median']:.2f}', "
        f"beyond 1' {t['frac_gt_1']:.1%} (grid centre: {g['median']:.2f}', "
        f"{g['frac_gt_1']:.1%}); validation {v['median']:.2f}'",
        err=True,
    )


@hookimpl(trylast=True)
def clusterfw_register_commands(cli: click.Group) -> None:
    """Add ``train resnet`` (creating the ``train`` group if no other plugin did)."""
    add_train_commands(cli, train_resnet, train_resnet_position)
