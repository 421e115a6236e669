"""Registers the ``resnet`` finder and the ``clusterfw train resnet`` command.

Entry point ``resnet`` in the ``clusterfw`` group. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

import click

from clusterfw.core.hookspecs import hookimpl
from clusterfw.plugins.finders.resnet.finder import ResNetFinder


@hookimpl(trylast=True)
def clusterfw_register_finders(register: Any) -> None:
    """Register :class:`ResNetFinder`."""
    register(ResNetFinder)


@click.command("resnet")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Output folder (weights, platt.json, metrics.jsonl, MODEL.md).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of data and training.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Cache of simulated cutouts (default OUT/data).")
@click.option("--width", type=int, default=32, show_default=True,
              help="Network width (paper: 64).")
@click.option("--n-train", type=int, default=120_000, show_default=True,
              help="Training cutouts.")
@click.option("--positive-fraction", type=float, default=0.15, show_default=True,
              help="Positives among the simulated training cutouts.")
@click.option("--val-patches", type=int, default=8, show_default=True,
              help="4°x4° validation patches (natural ratio).")
@click.option("--test-patches", type=int, default=6, show_default=True,
              help="4°x4° test patches.")
@click.option("--ratios", default="1,2,4,6,9,13", show_default=True,
              help="Negative:positive ratio of each epoch.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--first-epoch-batches", type=int, default=300, show_default=True)
@click.option("--max-batches", type=int, default=100, show_default=True,
              help="Batch limit of the later epochs.")
@click.option("--lr", type=float, default=5e-3, show_default=True)
@click.option("--weight-decay", type=float, default=3e-3, show_default=True)
@click.option("--warmup-fraction", type=float, default=0.2, show_default=True,
              help="Warm-up length, fraction of an epoch.")
@click.option("--decay-fraction", type=float, default=0.5, show_default=True,
              help="Ten-fold learning-rate drop after this fraction of an epoch.")
@click.option("--eval-every", type=int, default=25, show_default=True)
@click.option("--patience", type=int, default=3, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True, help="torch CPU threads.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_resnet(out: str, seed: int, data_dir: str | None, width: int, n_train: int,
                 positive_fraction: float, val_patches: int, test_patches: int, ratios: str,
                 batch_size: int, first_epoch_batches: int, max_batches: int, lr: float,
                 weight_decay: float, warmup_fraction: float, decay_fraction: float,
                 eval_every: int, patience: int, threads: int, quiet: bool) -> None:
    """Train the resnet finder on simulated cutouts (DeepSZ dynamic stratified sampling)."""
    import shlex
    import sys
    from pathlib import Path

    from clusterfw.core.errors import PluginError

    try:
        ratio_list = tuple(int(r) for r in ratios.split(","))
    except ValueError as err:
        raise PluginError(f"--ratios: expected comma-separated integers, got {ratios!r}") from err
    from clusterfw.plugins.finders.resnet.card import write_model_card
    from clusterfw.plugins.finders.resnet.train import TrainConfig, train

    cfg = TrainConfig(
        out=Path(out), seed=seed, data_dir=Path(data_dir) if data_dir else None, width=width,
        n_train=n_train, train_positive_fraction=positive_fraction, n_val_patches=val_patches,
        n_test_patches=test_patches, ratios=ratio_list, batch_size=batch_size,
        first_epoch_batches=first_epoch_batches, max_batches=max_batches, lr=lr,
        weight_decay=weight_decay, warmup_fraction=warmup_fraction, decay_fraction=decay_fraction,
        eval_every=eval_every, patience=patience, threads=threads,
    )  # fmt: skip
    command = "clusterfw " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    summary = train(cfg, progress=not quiet)
    write_model_card(summary, Path(out) / "MODEL.md", command)
    t = summary["test"]
    click.echo(
        f"wrote {out}/resnet.safetensors; test F1 {t['f1']:.3f} (purity {t['purity']:.3f}, "
        f"completeness {t['completeness']:.3f}) at p ≥ {summary['threshold_probability']:.3f}",
        err=True,
    )


@hookimpl(trylast=True)
def clusterfw_register_commands(cli: click.Group) -> None:
    """Add ``train resnet`` (creating the ``train`` group if no other plugin did)."""
    group = cli.commands.get("train")
    if group is None:
        group = click.Group("train", help="Train a plugin's model.")
        cli.add_command(group)
    if isinstance(group, click.Group) and "resnet" not in group.commands:
        group.add_command(train_resnet)
