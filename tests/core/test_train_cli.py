"""One ``train`` group for every plugin's training command."""

from __future__ import annotations

import click
from click.testing import CliRunner

from clusterfw.core.train_cli import add_train_commands, rebuilt_command_line


def _command(name: str, marker: str) -> click.Command:
    @click.command(name)
    @click.option("--out", default="weights")
    @click.option("--seed", type=int, default=0)
    @click.option("--epochs", type=int, default=3)
    @click.option("--quiet", is_flag=True)
    def run(out: str, seed: int, epochs: int, quiet: bool) -> None:
        click.echo(f"{marker} {rebuilt_command_line(click.get_current_context())}")

    return run


def test_train_group_is_created_once_and_a_command_registered_first_wins():
    cli = click.Group("clusterfw")
    add_train_commands(cli, _command("alpha", "first"))
    add_train_commands(cli, _command("alpha", "second"), _command("beta", "b"))
    group = cli.commands["train"]
    assert isinstance(group, click.Group) and sorted(group.commands) == ["alpha", "beta"]
    got = CliRunner().invoke(cli, ["train", "alpha", "--epochs", "7", "--quiet"])
    assert got.exit_code == 0
    assert (
        got.output.strip()
        == "first clusterfw train alpha --out weights --seed 0 --epochs 7 --quiet"
    )


def test_shipped_training_commands_share_the_group():
    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    got = CliRunner().invoke(cli, ["train", "--help"])
    assert got.exit_code == 0
    for name in ("resnet", "resnet-position", "frcnn", "xray", "vgg_mass"):
        assert f"  {name} " in got.output
