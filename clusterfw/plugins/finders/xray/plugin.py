"""Registers the ``xray`` finder and the ``clusterfw train xray`` command.

Entry point ``xray`` in the ``clusterfw`` group. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

import click

from clusterfw.core.cli import FiniteFloat
from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.train_cli import add_train_commands, rebuilt_command_line
from clusterfw.plugins.finders.xray.finder import XrayFinder

MODES = ("xray", "optical", "both")


@hookimpl(trylast=True)
def clusterfw_register_finders(register: Any) -> None:
    """Register :class:`XrayFinder`."""
    register(XrayFinder)


@click.command("xray")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Output folder (xray_<mode>.safetensors, platt_<mode>.json, metrics.jsonl, "
    "summary.json, MODEL.md).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Cache of simulated candidates (default OUT/data).",
)
@click.option("--train-fields", default="0-16", show_default=True, help="Training fields (ranges).")
@click.option("--val-fields", default="0-8", show_default=True, help="Validation fields.")
@click.option("--test-fields", default="0-8", show_default=True, help="Test fields.")
@click.option("--chunk-fields", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--draws",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="X-ray skies (AGN, background, counts) drawn per field; one optical render serves all.",
)
@click.option(
    "--abundance-boost",
    type=FiniteFloat(min=1.0, max=1000.0),
    default=25.0,
    show_default=True,
    help="Abundance factor of halos above 5e13 Msun in the simulated fields.",
)
@click.option(
    "--label",
    type=click.Choice(["real", "mass"]),
    default="real",
    show_default=True,
    help="real: Kosiba's task (group/cluster emission vs spurious detections and AGN); "
    "mass: M500c >= 1e14 Msun vs the rest.",
)
@click.option(
    "--modes",
    default="xray,optical,both",
    show_default=True,
    help="Networks to train (comma-separated subset of xray, optical, both).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option(
    "--max-minutes",
    type=FiniteFloat(min=0.0),
    default=0.0,
    show_default=True,
    help="Stop a network's epochs once this much wall time has passed (0: no limit); the best "
    "epoch so far is kept.",
)
@click.option(
    "--epoch-size",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Samples per epoch, half of each class drawn afresh (0: every sample of the rarer "
    "class and as many of the other).",
)
@click.option("--batch-size", type=click.IntRange(min=1, max=4096), default=32, show_default=True)
@click.option(
    "--lr", type=FiniteFloat(min=0.0, min_open=True, max=10.0), default=1e-3, show_default=True
)
@click.option(
    "--optimizer",
    type=click.Choice(["adamw", "sgd"]),
    default="adamw",
    show_default=True,
    help="adamw, or Kosiba's SGD with Nesterov momentum 0.9 (give --lr 0.01).",
)
@click.option("--no-augment", is_flag=True, help="Train without augmentation (ablation).")
@click.option("--threads", type=click.IntRange(min=1, max=1024), default=1, show_default=True)
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
def train_xray(
    out: str,
    seed: int,
    data_dir: str | None,
    train_fields: str,
    val_fields: str,
    test_fields: str,
    chunk_fields: int,
    draws: int,
    abundance_boost: float,
    label: str,
    modes: str,
    epochs: int,
    epoch_size: int,
    max_minutes: float,
    batch_size: int,
    lr: float,
    optimizer: str,
    no_augment: bool,
    threads: int,
    quiet: bool,
) -> None:
    """Train Kosiba's X-ray / optical / both classifiers of the xray finder."""
    from pathlib import Path

    from clusterfw.core.atomic import check_writable
    from clusterfw.core.errors import PluginError

    mode_list = tuple(m.strip() for m in modes.split(",") if m.strip())
    bad = [m for m in mode_list if m not in MODES]
    if not mode_list or bad:
        raise PluginError(f"--modes: expected a subset of xray, optical, both, got {modes!r}")
    from clusterfw.plugins.finders.xray.train import parse_fields

    for spec in (train_fields, val_fields, test_fields):
        parse_fields(spec)
    check_writable(Path(out), folder=True)
    if data_dir is not None:
        check_writable(Path(data_dir), folder=True)
    from clusterfw.plugins.finders.xray.card import write_model_card
    from clusterfw.plugins.finders.xray.train import TrainConfig, train

    cfg = TrainConfig(
        out=Path(out), seed=seed, data_dir=Path(data_dir) if data_dir else None,
        train_fields=train_fields, val_fields=val_fields, test_fields=test_fields,
        chunk_fields=chunk_fields, draws=draws, abundance_boost=abundance_boost, label=label,
        modes=mode_list, epochs=epochs, epoch_size=epoch_size,
        max_minutes=max_minutes, batch_size=batch_size,
        lr=lr, optimizer=optimizer, augment=not no_augment, threads=threads,
    )  # fmt: skip
    command = rebuilt_command_line(click.get_current_context())
    summary = train(cfg, progress=not quiet)
    write_model_card(summary, Path(out) / "MODEL.md", command)
    for mode, m in summary["modes"].items():
        t = m["test_balanced"]
        click.echo(
            f"{mode}: test accuracy {t['accuracy']:.3f}, AUC {t['auc']:.3f} (balanced test set)",
            err=True,
        )


@hookimpl(trylast=True)
def clusterfw_register_commands(cli: click.Group) -> None:
    """Add ``train xray`` (creating the ``train`` group if no other plugin did)."""
    add_train_commands(cli, train_xray)
