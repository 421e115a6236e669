"""Hook specifications: the plugin API reference.

A plugin is a module (or object) with functions named like these hooks, decorated with
``clusterfw.hookimpl``, and advertised in its distribution's ``pyproject.toml``::

    [project.entry-points.clusterfw]
    peak = "clusterfw_peakfinder.plugin"

Every hook receives a ``register`` callback (or the CLI group) and returns nothing; a plugin
calls ``register(SomeClass)`` once per class it provides. None of these hooks is
``firstresult``: every plugin's implementation is called. Built-in plugins are marked
``trylast`` so that a third-party plugin registering the same name is seen first and wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from clusterfw.core.layers.readers import LayerReader
    from clusterfw.core.plugin_api import Combiner, Estimator, Finder, Reader

PROJECT_NAME = "clusterfw"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def clusterfw_register_finders(register: Callable[[type[Finder]], None]) -> None:
    """Register :class:`~clusterfw.core.plugin_api.Finder` subclasses (``register(MyFinder)``)."""


@hookspec
def clusterfw_register_estimators(register: Callable[[type[Estimator]], None]) -> None:
    """Register :class:`~clusterfw.core.plugin_api.Estimator` subclasses."""


@hookspec
def clusterfw_register_combiners(register: Callable[[type[Combiner]], None]) -> None:
    """Register :class:`~clusterfw.core.plugin_api.Combiner` subclasses."""


@hookspec
def clusterfw_register_readers(register: Callable[[type[Reader]], None]) -> None:
    """Register :class:`~clusterfw.core.plugin_api.Reader` subclasses (input formats)."""


@hookspec
def clusterfw_register_layer_readers(register: Callable[[type[LayerReader]], None]) -> None:
    """Register :class:`~clusterfw.core.layers.readers.LayerReader` subclasses.

    Each sets ``kind`` and an explicit integer ``priority`` (higher is asked first; the
    built-ins use 10-40): ``clusterfw run`` sorts its input files into layers with them.
    """


@hookspec(firstresult=True)
def clusterfw_demo_inputs() -> list[str] | None:
    """Paths of the demo sky's files, used by ``clusterfw run`` without inputs.

    Implemented by the simulator (:mod:`clusterfw.sim.demo`), so the core does not import it.
    The first implementation returning a list wins.
    """


@hookspec
def clusterfw_register_commands(cli: click.Group) -> None:
    """Add click commands to the ``clusterfw`` command group (e.g. ``train``).

    Import heavy dependencies inside the command function, not at module level.
    """
