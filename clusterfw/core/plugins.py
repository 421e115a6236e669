"""Plugin manager factory and the registry of plugin classes.

Nothing happens at import time. :func:`get_plugin_manager` builds a fresh manager; the
:class:`Registry` asks it for the registered classes.

Environment variables
---------------------
CLUSTERFW_DISABLE_PLUGIN_AUTOLOAD
    When set to a non-empty value, only entry points of the ``clusterfw`` distribution itself
    (the built-ins) are loaded.
CLUSTERFW_BLOCK_PLUGINS
    Comma-separated entry-point names that are never loaded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from clusterfw.core import hookspecs
from clusterfw.core.errors import PluginError
from clusterfw.core.plugin_api import PLUGIN_KINDS

ENTRY_POINT_GROUP = "clusterfw"
AUTOLOAD_ENV = "CLUSTERFW_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "CLUSTERFW_BLOCK_PLUGINS"
BUILTIN_DISTRIBUTION = "clusterfw"


class PluginLoadWarning(UserWarning):
    """A plugin's entry point could not be loaded; the rest of clusterfw still works."""


def get_plugin_manager(
    *,
    load_entrypoints: bool = True,
    blocked: Iterable[str] = (),
    extra_plugins: Iterable[object] = (),
) -> pluggy.PluginManager:
    """Build a plugin manager with the clusterfw hook specifications.

    Parameters
    ----------
    load_entrypoints : bool
        Load plugins from the ``clusterfw`` entry-point group. The environment variable
        ``CLUSTERFW_DISABLE_PLUGIN_AUTOLOAD`` restricts this to the built-in distribution.
    blocked : iterable of str
        Entry-point names to block (in addition to ``CLUSTERFW_BLOCK_PLUGINS``).
    extra_plugins : iterable
        Plugin objects or modules to register directly (tests, library users).

    Returns
    -------
    pluggy.PluginManager
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    blocked_names = set(blocked) | {
        n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()
    }
    for name in blocked_names:
        pm.set_blocked(name)
    if load_entrypoints:
        _load_entrypoints(pm, builtins_only=bool(os.environ.get(AUTOLOAD_ENV)))
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def _load_entrypoints(pm: pluggy.PluginManager, builtins_only: bool) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        if builtins_only and dist != BUILTIN_DISTRIBUTION:
            continue
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the CLI down
            warnings.warn(
                f"clusterfw plugin {ep.name!r} from distribution {dist!r} failed to load: "
                f"{type(exc).__name__}: {exc}",
                PluginLoadWarning,
                stacklevel=2,
            )
            continue
        pm.register(plugin, name=ep.name)
        _DISTRIBUTIONS[id(plugin)] = dist


_DISTRIBUTIONS: dict[int, str] = {}


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin class and where it came from."""

    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str


class Registry:
    """Plugin classes by kind and name, collected through the registration hooks.

    Parameters
    ----------
    pm : pluggy.PluginManager, optional
        Defaults to a fresh :func:`get_plugin_manager`.
    """

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else get_plugin_manager()
        self._plugins: dict[str, dict[str, PluginInfo]] = {k: {} for k in PLUGIN_KINDS}
        for kind in PLUGIN_KINDS:
            self._collect(kind)

    def _collect(self, kind: str) -> None:
        hook = getattr(self.pm.hook, f"clusterfw_register_{kind}s")
        base = PLUGIN_KINDS[kind]
        # Call implementations one by one, in pluggy's call order, to know who registered what.
        for impl in reversed(hook.get_hookimpls()):
            dist = _DISTRIBUTIONS.get(id(impl.plugin), "in-process")

            def register(cls: type, _impl=impl, _dist=dist) -> None:
                if not (isinstance(cls, type) and issubclass(cls, base)):
                    raise PluginError(
                        f"plugin {_impl.plugin_name!r} registered {cls!r}, which is not a "
                        f"{base.__name__} subclass"
                    )
                table = self._plugins[kind]
                if cls.name in table:  # first registration wins (third-party before trylast)
                    return
                table[cls.name] = PluginInfo(kind, cls.name, cls, _impl.plugin_name, _dist)

            impl.function(register)

    def names(self, kind: str) -> list[str]:
        """Sorted names of the registered plugins of one kind."""
        return sorted(self._plugins[kind])

    def info(self, kind: str, name: str) -> PluginInfo:
        """The :class:`PluginInfo` of a plugin; unknown names raise :class:`PluginError`."""
        try:
            return self._plugins[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise PluginError(f"unknown {kind} {name!r} (available: {known})") from None

    def get(self, kind: str, name: str) -> type:
        """The class of a plugin."""
        return self.info(kind, name).cls

    def all(self) -> list[PluginInfo]:
        """Every registered plugin, sorted by kind and name."""
        return [p for kind in PLUGIN_KINDS for _, p in sorted(self._plugins[kind].items())]

    def commands(self, cli: object) -> None:
        """Let plugins add their click commands to ``cli``."""
        self.pm.hook.clusterfw_register_commands(cli=cli)
