"""Helpers for plugins that add a ``clusterfw train NAME`` command.

Every plugin that ships weights adds its training command to one ``train`` group through the
``clusterfw_register_commands`` hook, and writes the command that made the weights into its
model card. Both are done the same way for every plugin, here.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

import click


def add_train_commands(cli: click.Group, *commands: click.Command) -> None:
    """Add ``commands`` to ``cli``'s ``train`` group, creating the group if no plugin did.

    A command of the same name already in the group (registered by another plugin first) is
    kept: plugins are registered ``trylast``, so a third-party plugin's command wins.
    """
    group = cli.commands.get("train")
    if group is None:
        group = click.Group("train", help="Train a plugin's model.")
        cli.add_command(group)
    if not isinstance(group, click.Group):
        return
    for command in commands:
        if command.name not in group.commands:
            group.add_command(command)


def rebuilt_command_line(ctx: click.Context, always: Iterable[str] = ("out", "seed")) -> str:
    """``clusterfw train NAME ...`` rebuilt from the parsed options, for a model card.

    Options left at their defaults are omitted, except those named in ``always`` (so the card
    says where the weights went and which seed made them); flags appear when set.
    """
    keep = set(always)
    parts = ["clusterfw", "train", str(ctx.command.name)]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        value = ctx.params.get(param.name)
        if param.name not in keep and value == param.default:
            continue
        flag = param.opts[0]
        if param.is_flag:
            if value:
                parts.append(flag)
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)
