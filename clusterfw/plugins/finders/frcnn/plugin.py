"""Registers the ``frcnn`` finder and the ``clusterfw train frcnn`` command.

Entry point ``frcnn`` in the ``clusterfw`` group. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

import click

from clusterfw.core.cli import FiniteFloat
from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.train_cli import add_train_commands, rebuilt_command_line
from clusterfw.plugins.finders.frcnn.data import BOX_CENTRES
from clusterfw.plugins.finders.frcnn.finder import FrcnnFinder


@hookimpl(trylast=True)
def clusterfw_register_finders(register: Any) -> None:
    """Register :class:`FrcnnFinder`."""
    register(FrcnnFinder)


@click.command("frcnn")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Output folder (frcnn.safetensors, platt.json, metrics.jsonl, summary.json, MODEL.md).",
)
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Cache of simulated fields (default OUT/data): train_s<seed>/, val/, test/.",
)
@click.option("--n-train", type=click.IntRange(2, 100_000), default=200, show_default=True)
@click.option("--n-chunks", type=click.IntRange(1, 9), default=2, show_default=True)
@click.option("--n-val", type=click.IntRange(2, 100_000), default=50, show_default=True)
@click.option("--n-test", type=click.IntRange(2, 100_000), default=50, show_default=True)
@click.option(
    "--width", type=click.IntRange(4, 128), default=16, show_default=True, help="Trunk width."
)
@click.option("--batch-size", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 10_000), default=40, show_default=True)
@click.option(
    "--max-minutes",
    type=FiniteFloat(min=0.0, min_open=True),
    default=60.0,
    show_default=True,
    help="Stop after the epoch that passes this wall time.",
)
@click.option("--lr", type=FiniteFloat(min=0.0, min_open=True, max=1.0), default=1e-3,
              show_default=True)  # fmt: skip
@click.option(
    "--schedule",
    type=click.Choice(["cosine", "plateau"]),
    default="cosine",
    show_default=True,
    help="cosine: LR to --lr-min over the planned --epochs (fixed in advance); plateau: x0.3 "
    "after two epochs without a better validation F1.",
)
@click.option("--lr-min", type=FiniteFloat(min=0.0, max=1.0), default=1e-5, show_default=True)
@click.option(
    "--init",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Start from these frcnn weights (a warm restart) instead of random weights.",
)
@click.option(
    "--box-centre",
    type=click.Choice(list(BOX_CENTRES)),
    default="halo",
    show_default=True,
    help="Centre of the training boxes: the halo's, or the simulated BCG's (Deep-CEE's truth).",
)
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def train_frcnn(
    out: str,
    seed: int,
    data_dir: str | None,
    n_train: int,
    n_chunks: int,
    n_val: int,
    n_test: int,
    width: int,
    batch_size: int,
    epochs: int,
    max_minutes: float,
    lr: float,
    schedule: str,
    lr_min: float,
    init: str | None,
    box_centre: str,
    threads: int,
    quiet: bool,
) -> None:
    """Train the frcnn optical finder on simulated g, r, i fields (Deep-CEE's Faster R-CNN)."""
    from pathlib import Path

    from clusterfw.core.atomic import check_writable

    out_dir = Path(out)
    check_writable(out_dir, folder=True)
    if data_dir is not None:
        check_writable(Path(data_dir), folder=True)
    if init is not None and Path(init).resolve() == (out_dir / "frcnn.safetensors").resolve():
        from clusterfw.core.errors import InputError

        raise InputError(init, "--init is the file this run writes; copy it elsewhere first")
    if init is not None:  # a corrupt or foreign file fails before any field is simulated
        from clusterfw.plugins.finders.frcnn.model import load_weights

        load_weights(init)
    from clusterfw.plugins.finders.frcnn.card import write_model_card
    from clusterfw.plugins.finders.frcnn.train import TrainConfig, train

    cfg = TrainConfig(
        out=out_dir, seed=seed, data_dir=Path(data_dir) if data_dir else None, n_train=n_train,
        n_chunks=n_chunks, n_val=n_val, n_test=n_test, width=width, batch_size=batch_size,
        epochs=epochs, max_minutes=max_minutes, lr=lr, threads=threads, schedule=schedule,
        lr_min=lr_min, init=Path(init) if init else None, box_centre=box_centre,
    )  # fmt: skip
    command = rebuilt_command_line(click.get_current_context())
    summary = train(cfg, progress=not quiet)
    write_model_card(summary, out_dir / "MODEL.md", command)
    t = summary["test_1arcmin"]
    click.echo(
        f"wrote {out}/frcnn.safetensors; test F1(1') {t['f1']:.3f} (purity {t['purity']:.3f}, "
        f"completeness {t['completeness']:.3f}) at p ≥ {summary['threshold_probability']:.3f}",
        err=True,
    )


@hookimpl(trylast=True)
def clusterfw_register_commands(cli: click.Group) -> None:
    """Add ``train frcnn`` (creating the ``train`` group if no other plugin did)."""
    add_train_commands(cli, train_frcnn)
