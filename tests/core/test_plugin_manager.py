"""The hook machinery, each test from a fresh plugin manager."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pluggy
import pyarrow as pa
import pytest

from clusterfw.core import hookspecs, plugins
from clusterfw.core.errors import PluginError
from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.layers.readers import MmLayerReader
from clusterfw.core.plugin_api import Combiner, Estimator, Finder, Reader
from clusterfw.core.plugins import PluginLoadWarning, Registry, get_plugin_manager
from clusterfw.core.schema import empty_candidates

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(
    n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("clusterfw_")
)


class DummyFinder(Finder):
    name = "dummy"
    score_kind = "snr"

    def find(self, tile):
        return empty_candidates(self.name, self.score_kind)


class DummyCombiner(Combiner):
    name = "dummycomb"

    def combine(self, tables, forced, calibration=None):
        return next(iter(tables.values()))


class DummyEstimator(Estimator):
    name = "dummyest"
    columns = (pa.field("dummyest_m500", pa.float32()),)

    def estimate(self, table, sky):
        return table


class DummyReader(Reader):
    name = "dummyreader"

    def can_read(self, paths):
        return False

    def read(self, paths, overrides):
        raise AssertionError("never called")


class DummyLayerReader(MmLayerReader):
    name = "dummylayer"
    kind = "mm"
    priority = 99


class InProcessPlugin:
    """A test plugin object implementing every hook."""

    commands_added: list[str] = []

    @hookimpl
    def clusterfw_register_finders(self, register):
        register(DummyFinder)

    @hookimpl
    def clusterfw_register_combiners(self, register):
        register(DummyCombiner)

    @hookimpl
    def clusterfw_register_estimators(self, register):
        register(DummyEstimator)

    @hookimpl
    def clusterfw_register_readers(self, register):
        register(DummyReader)

    @hookimpl
    def clusterfw_register_commands(self, cli):
        cli.add_command(types.SimpleNamespace(name="dummy-cmd"))
        self.commands_added.append("dummy-cmd")

    @hookimpl
    def clusterfw_register_layer_readers(self, register):
        register(DummyLayerReader)

    @hookimpl
    def clusterfw_demo_inputs(self):
        return ["demo_a.fits", "demo_b.fits"]


class FakeGroup:
    def __init__(self):
        self.commands = []

    def add_command(self, cmd):
        self.commands.append(cmd.name)


def test_every_hook_is_registered_and_called():
    plugin = InProcessPlugin()
    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])
    registry = Registry(pm)
    assert registry.get("finder", "dummy") is DummyFinder
    assert registry.get("combiner", "dummycomb") is DummyCombiner
    assert registry.get("estimator", "dummyest") is DummyEstimator
    assert registry.get("reader", "dummyreader") is DummyReader
    group = FakeGroup()
    registry.commands(group)
    assert group.commands == ["dummy-cmd"]
    readers = registry.layer_readers()
    assert type(readers[0]) is DummyLayerReader  # priority 99, asked first
    assert registry.demo_inputs() == ["demo_a.fits", "demo_b.fits"]
    assert registry.info("finder", "dummy").distribution == "in-process"
    pm.unregister(plugin)
    assert "dummy" not in Registry(pm).names("finder")


def test_hooks_covered_by_this_test_plugin():
    """Meta-test: a new hook fails here until it is tested."""
    implemented = sorted(n for n in dir(InProcessPlugin) if n.startswith("clusterfw_"))
    assert implemented == HOOKS


def test_every_hook_documented_in_plugin_guide():
    """Meta-test: the plugin author's guide mentions every hook."""
    guide = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    for name in HOOKS:
        assert name in guide, f"{name} missing from docs/writing-a-plugin.md"
        assert inspect.getdoc(getattr(hookspecs, name)), f"{name} has no docstring"


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def clusterfw_register_finder(self, register):  # missing "s"
            pass

    with pytest.raises(pluggy.PluginValidationError):
        get_plugin_manager(load_entrypoints=False, extra_plugins=[Typo()])


def test_registering_a_non_plugin_class_is_an_error():
    class Bad:
        @hookimpl
        def clusterfw_register_finders(self, register):
            register(int)

    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[Bad(), InProcessPlugin()])
    with pytest.warns(PluginLoadWarning, match="registered <class 'int'>, which is not a Finder"):
        registry = Registry(pm)
    assert registry.names("finder") == ["dummy"]  # the good plugin still works


def test_plugin_whose_hook_raises_only_warns():
    class Raising:
        @hookimpl
        def clusterfw_register_finders(self, register):
            register(DummyFinder)
            raise RuntimeError("boom")

        @hookimpl
        def clusterfw_register_commands(self, cli):
            raise RuntimeError("no commands today")

    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[Raising()])
    with pytest.warns(PluginLoadWarning, match="failed in clusterfw_register_finders.*boom"):
        registry = Registry(pm)
    assert registry.names("finder") == []  # nothing half-registered
    with pytest.warns(PluginLoadWarning, match="no commands today"):
        registry.commands(FakeGroup())


def test_builtin_loses_name_clash_to_third_party():
    class Builtin(DummyFinder):
        pass

    class ThirdParty(DummyFinder):
        pass

    class BuiltinPlugin:
        @hookimpl(trylast=True)
        def clusterfw_register_finders(self, register):
            register(Builtin)

    class ThirdPartyPlugin:
        @hookimpl
        def clusterfw_register_finders(self, register):
            register(ThirdParty)

    pm = get_plugin_manager(
        load_entrypoints=False, extra_plugins=[BuiltinPlugin(), ThirdPartyPlugin()]
    )
    assert Registry(pm).get("finder", "dummy") is ThirdParty


def _fake_entry_points(monkeypatch, eps):
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)


def _ep(name, value, dist_name):
    ep = EntryPoint(name, value, "clusterfw")
    return ep._for(types.SimpleNamespace(name=dist_name))


def test_broken_plugin_warns_with_distribution(monkeypatch):
    module = types.ModuleType("cfw_good_plugin")

    @hookimpl
    def clusterfw_register_finders(register):
        register(DummyFinder)

    module.clusterfw_register_finders = clusterfw_register_finders
    sys.modules["cfw_good_plugin"] = module
    eps = [
        _ep("broken", "cfw_no_such_module_xyz", "broken-dist"),
        _ep("good", "cfw_good_plugin", "good-dist"),
    ]
    _fake_entry_points(monkeypatch, eps)
    with pytest.warns(PluginLoadWarning, match="'broken' from distribution 'broken-dist'"):
        pm = get_plugin_manager()
    registry = Registry(pm)
    assert registry.info("finder", "dummy").distribution == "good-dist"


def test_block_and_autoload_switches(monkeypatch):
    module = types.ModuleType("cfw_third_party")

    @hookimpl
    def clusterfw_register_finders(register):
        register(DummyFinder)

    module.clusterfw_register_finders = clusterfw_register_finders
    sys.modules["cfw_third_party"] = module
    _fake_entry_points(monkeypatch, [_ep("third", "cfw_third_party", "third-dist")])
    assert "dummy" in Registry(get_plugin_manager()).names("finder")
    assert "dummy" not in Registry(get_plugin_manager(blocked=["third"])).names("finder")
    monkeypatch.setenv("CLUSTERFW_BLOCK_PLUGINS", "other, third")
    assert "dummy" not in Registry(get_plugin_manager()).names("finder")
    monkeypatch.delenv("CLUSTERFW_BLOCK_PLUGINS")
    monkeypatch.setenv("CLUSTERFW_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "dummy" not in Registry(get_plugin_manager()).names("finder")


def test_unknown_plugin_name_lists_alternatives():
    registry = Registry(
        get_plugin_manager(load_entrypoints=False, extra_plugins=[InProcessPlugin()])
    )
    with pytest.raises(PluginError, match=r"unknown finder 'nope' \(available: dummy\)"):
        registry.get("finder", "nope")


def test_discovery_imports_no_heavy_stacks():
    code = (
        "import sys; from clusterfw.core.plugins import Registry; r = Registry(); "
        "from clusterfw.core.cli import main; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_forced_scoring_support_is_detected():
    class Scoring(DummyFinder):
        def score_at(self, tile, ra, dec):
            return np.zeros(len(ra))

    assert Scoring.supports_forced_scoring()
    assert not DummyFinder.supports_forced_scoring()
    assert re.match(r"\d", Scoring.version)
