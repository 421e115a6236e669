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
from typing import Any

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
    pm = ClusterfwPluginManager(hookspecs.PROJECT_NAME)
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


class ClusterfwPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution each plugin came from."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self.distributions: dict[str, str] = {}

    def distribution_of(self, plugin_name: str) -> str:
        """Distribution of a plugin loaded from an entry point (``in-process`` otherwise)."""
        return self.distributions.get(plugin_name, "in-process")


def _load_entrypoints(pm: ClusterfwPluginManager, builtins_only: bool) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        if builtins_only and dist != BUILTIN_DISTRIBUTION:
            continue
        if pm.is_blocked(ep.name):
            continue
        if pm.get_plugin(ep.name) is not None:
            warnings.warn(
                f"clusterfw plugin {ep.name!r} from distribution {dist!r} ignored: the name is "
                f"already taken by distribution {pm.distribution_of(ep.name)!r}",
                PluginLoadWarning,
                stacklevel=2,
            )
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
        if pm.is_registered(plugin):  # two entry points naming one module
            warnings.warn(
                f"clusterfw plugin {ep.name!r} from distribution {dist!r} ignored: its module "
                f"{getattr(plugin, '__name__', plugin)!r} is already loaded as plugin "
                f"{pm.get_name(plugin)!r}",
                PluginLoadWarning,
                stacklevel=2,
            )
            continue
        try:
            pm.register(plugin, name=ep.name)
            _check_pending_of(pm, plugin)
        except pluggy.PluginValidationError as exc:  # e.g. a misspelt hook name
            if pm.is_registered(plugin):
                pm.unregister(plugin)
            warnings.warn(
                f"clusterfw plugin {ep.name!r} from distribution {dist!r} ignored: "
                f"{' '.join(str(exc).split())}",
                PluginLoadWarning,
                stacklevel=2,
            )
            continue
        pm.distributions[ep.name] = dist


def _check_pending_of(pm: pluggy.PluginManager, plugin: object) -> None:
    """``check_pending`` for one plugin: its hook implementations must match a hook spec."""
    for name in pm.hook.__dict__:
        if name.startswith("_"):
            continue
        caller = getattr(pm.hook, name)
        if not caller.has_spec():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.hookwrapper and not impl.optionalhook:
                    raise pluggy.PluginValidationError(
                        plugin,
                        f"unknown hook {name!r} (a misspelt clusterfw_register_* name?)",
                    )


def check_plugin_class(cls: object, base: type) -> None:
    """Check a class given to ``register``: a ``base`` subclass with a valid ``name``.

    Raises
    ------
    PluginError
        When ``cls`` is not a ``base`` subclass, or its ``name`` is not a valid Python identifier
        (a name is typed on the command line and prefixes the plugin's columns).
    """
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"registered {cls!r}, which is not a {base.__name__} subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str):
        raise PluginError(f"{base.__name__} {cls.__qualname__} has no 'name' class attribute")
    if not name.isidentifier():
        raise PluginError(
            f"{base.__name__} {cls.__qualname__} has name {name!r}, which is not a valid Python "
            "identifier (letters, digits and _, not starting with a digit)"
        )


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
        distribution_of = getattr(self.pm, "distribution_of", lambda name: "in-process")
        for impl in reversed(hook.get_hookimpls()):
            dist = distribution_of(impl.plugin_name)

            staged: list[PluginInfo] = []

            def register(
                cls: type,
                _impl: Any = impl,
                _dist: str = dist,
                _staged: list[PluginInfo] = staged,
            ) -> None:
                check_plugin_class(cls, base)
                _staged.append(PluginInfo(kind, cls.name, cls, _impl.plugin_name, _dist))  # type: ignore[attr-defined]

            try:
                impl.function(register)
            except Exception as exc:  # one broken plugin must not take the others down
                _warn_broken(impl.plugin_name, dist, f"clusterfw_register_{kind}s", exc)
                continue
            table = self._plugins[kind]
            for info in staged:
                table.setdefault(info.name, info)  # first wins: third-party before trylast

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

    def layer_readers(self) -> list[Any]:
        """Instances of the registered layer readers, highest ``priority`` first.

        A reader class must set ``kind`` and an integer ``priority`` of its own (not
        inherited from :class:`~clusterfw.core.layers.readers.LayerReader`); the first
        registration of a name wins (third-party before the built-ins).

        Raises
        ------
        PluginError
            For a class that is not a ``LayerReader`` or has no explicit priority.
        """
        from clusterfw.core.layers.readers import LayerReader

        found: dict[str, Any] = {}
        for impl in reversed(self.pm.hook.clusterfw_register_layer_readers.get_hookimpls()):
            staged: list[type] = []
            impl.function(staged.append)
            for cls in staged:
                if not (isinstance(cls, type) and issubclass(cls, LayerReader)):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} registered {cls!r} as a layer reader; "
                        "it is not a LayerReader subclass"
                    )
                explicit = any("priority" in vars(c) for c in cls.__mro__ if c is not LayerReader)
                if not explicit or not isinstance(cls.priority, int):
                    raise PluginError(
                        f"layer reader {cls.__name__} (plugin {impl.plugin_name!r}) sets no "
                        "integer priority"
                    )
                found.setdefault(cls.name, cls())
        return sorted(found.values(), key=lambda r: -r.priority)

    def demo_inputs(self) -> list[str] | None:
        """The demo sky's files, from the first plugin implementing ``clusterfw_demo_inputs``."""
        result = self.pm.hook.clusterfw_demo_inputs()
        return None if result is None else [str(p) for p in result]

    def commands(self, cli: object) -> None:
        """Let plugins add their click commands to ``cli`` (a failing plugin only warns)."""
        distribution_of = getattr(self.pm, "distribution_of", lambda name: "in-process")
        for impl in reversed(self.pm.hook.clusterfw_register_commands.get_hookimpls()):
            try:
                impl.function(cli)
            except Exception as exc:
                _warn_broken(
                    impl.plugin_name,
                    distribution_of(impl.plugin_name),
                    "clusterfw_register_commands",
                    exc,
                )


def _warn_broken(plugin: str, distribution: str, hook: str, exc: Exception) -> None:
    warnings.warn(
        f"clusterfw plugin {plugin!r} from distribution {distribution!r} failed in {hook}: "
        f"{type(exc).__name__}: {exc}",
        PluginLoadWarning,
        stacklevel=3,
    )
