"""Ctrl-C exits 130 and SIGTERM 143 with one line; nothing written; workers stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clusterfw.core.fits_io import write_flat_sky_fits
from tests.conftest import make_blob_sky

SLOW_PLUGIN = """
import os, time
import numpy as np
from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.plugin_api import Finder, PluginOptions
from clusterfw.core.schema import candidate_table


class SlowFinder(Finder):
    name = "slow"
    version = "0.1"
    score_kind = "snr"
    margin_arcmin = 1.0
    Options = PluginOptions

    def find(self, tile):
        open(os.path.join(os.environ["MARKS"], f"{os.getpid()}.{tile.tile_id}"), "w").close()
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
        return candidate_table(finder=self.name, score_kind=self.score_kind, ra=np.zeros(0),
                               dec=np.zeros(0), score=np.zeros(0), tile_id=tile.tile_id)


@hookimpl
def clusterfw_register_finders(register):
    register(SlowFinder)
"""

MAIN = """
import os, sys, time
import slowplugin
from clusterfw.core import catalog_io, cli
from clusterfw.core.plugins import Registry, get_plugin_manager

registry = Registry(get_plugin_manager(extra_plugins=[slowplugin]))
cli.cli_registry = lambda: registry
if os.environ.get("SLOW_WRITE"):
    real = catalog_io.pq.write_table
    def slow_write(table, where, **kw):
        real(table, where, **kw)
        open(os.path.join(os.environ["MARKS"], "writing"), "w").close()
        time.sleep(60)
    catalog_io.pq.write_table = slow_write
sys.argv[0] = "clusterfw"
cli.main()
"""


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "slowplugin.py").write_text(textwrap.dedent(SLOW_PLUGIN))
    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN))
    sky, _, _ = make_blob_sky(size=120)
    maps = write_flat_sky_fits(sky, tmp_path / "maps", prefix="m")
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    return tmp_path, maps, marks, out


def _start(tmp, maps, marks, out, *extra, env=None):
    environ = dict(os.environ, PYTHONPATH=f"{tmp}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                   MARKS=str(marks), **(env or {}))  # fmt: skip
    cmd = [sys.executable, str(tmp / "main.py"), "run", "--finder", "slow", *map(str, maps),
           "--out", str(out / "cat.parquet"), "-q", "--tile-size", "20", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environ, start_new_session=True,
                            preexec_fn=_terminal_signals)  # fmt: skip


def _terminal_signals() -> None:
    """Start the command with Ctrl-C handled as in a terminal: a test run launched in the
    background (``cmd &`` in a script) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(pattern_dir: Path, name: str | None = None, timeout: float = 60) -> list[Path]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [p for p in pattern_dir.iterdir() if name is None or p.name == name]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("the command never started its work")


def _gone(pid: int, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_exits_130_with_one_line(setup, workers):
    tmp, maps, marks, out = setup
    proc = _start(tmp, maps, marks, out, "--workers", workers, env={"SLOW_SECONDS": "30"})
    _wait_for(marks)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal sends Ctrl-C to the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "clusterfw: interrupted"
    assert list(out.iterdir()) == []
    pids = {int(p.name.split(".")[0]) for p in marks.iterdir()}
    assert all(_gone(pid) for pid in pids if pid != proc.pid)  # workers stopped too


def test_sigterm_removes_the_temporary_and_exits_143(setup):
    tmp, maps, marks, out = setup
    proc = _start(tmp, maps, marks, out, env={"SLOW_WRITE": "1"})
    _wait_for(marks, "writing")
    assert [p.name for p in out.iterdir()] == [f".cat.parquet.clusterfw-tmp-{proc.pid}.tmp"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "clusterfw: terminated"
    assert list(out.iterdir()) == []


def test_sigkill_temporary_is_cleaned_by_the_next_write(setup):
    tmp, maps, marks, out = setup
    proc = _start(tmp, maps, marks, out, env={"SLOW_WRITE": "1"})
    _wait_for(marks, "writing")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = [p.name for p in out.iterdir()]
    assert left == [f".cat.parquet.clusterfw-tmp-{proc.pid}.tmp"]
    (marks / "writing").unlink()
    again = _start(tmp, maps, marks, out)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert [p.name for p in out.iterdir()] == ["cat.parquet"]
