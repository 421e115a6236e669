"""Shared pieces of the scale tests: a tiny sky, test finders, and a CLI launcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clusterfw.core.fits_io import write_flat_sky_fits
from tests.conftest import make_blob_sky

#: Test finders: ``peaks`` (the brightest decrement of each tile, optionally slow, leaving a mark
#: ``<pid>.<tile>`` per tile in the ``marks`` folder) and ``boom`` (raises on tile ``boom_tile``).
#: Options, not environment variables: they travel with the finder to Dask workers.
PLUGIN = """
import os, time
import numpy as np
from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.plugin_api import Finder, PluginOptions
from clusterfw.core.schema import candidate_table


class PeaksOptions(PluginOptions):
    marks: str = ""
    slow_seconds: float = 0.0
    boom_tile: int = -1


class PeaksFinder(Finder):
    name = "peaks"
    version = "0.1"
    score_kind = "snr"
    margin_arcmin = 1.0
    Options = PeaksOptions

    def find(self, tile):
        if self.options.marks:
            open(os.path.join(self.options.marks, f"{os.getpid()}.{tile.tile_id}"), "w").close()
        time.sleep(self.options.slow_seconds)
        image = -np.nan_to_num(tile.maps.sum(axis=0))
        y, x = np.unravel_index(int(np.argmax(image)), image.shape)
        ra, dec = tile.wcs.pixel_to_world_values(float(x), float(y))
        return candidate_table(finder=self.name, score_kind=self.score_kind,
                               ra=np.array([float(ra)]), dec=np.array([float(dec)]),
                               score=np.array([image[y, x]], dtype=np.float32),
                               tile_id=tile.tile_id)


class BoomFinder(PeaksFinder):
    name = "boom"

    def find(self, tile):
        if tile.tile_id == self.options.boom_tile:
            raise RuntimeError("simulated failure")
        return super().find(tile)


@hookimpl
def clusterfw_register_finders(register):
    register(PeaksFinder)
    register(BoomFinder)
"""

MAIN = """
import sys
import scaleplugin
from clusterfw.core import cli
from clusterfw.core.plugins import Registry, get_plugin_manager

if __name__ == "__main__":  # Dask's LocalCluster spawns workers, which import this module
    registry = Registry(get_plugin_manager(extra_plugins=[scaleplugin]))
    cli.cli_registry = lambda: registry
    sys.argv[0] = "clusterfw"
    cli.main()
"""


def write_plugin(folder: Path) -> Path:
    """Write ``scaleplugin.py`` and ``main.py`` (the CLI with the test finders) into ``folder``."""
    (folder / "scaleplugin.py").write_text(textwrap.dedent(PLUGIN))
    (folder / "main.py").write_text(textwrap.dedent(MAIN))
    return folder / "main.py"


def tiny_maps(folder: Path) -> list[Path]:
    """A 1 deg, 3-band flat sky with 12 decrements (9 tiles at --tile-size 20)."""
    sky, _, _ = make_blob_sky(size=120)
    return write_flat_sky_fits(sky, folder, prefix="m")


def _terminal_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(main: Path, *args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``main.py ARGS`` in its own session (so the whole run can be killed)."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join([str(main.parent), environ.get("PYTHONPATH", "")])
    environ.update(env or {})
    return subprocess.Popen(
        [sys.executable, str(main), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        start_new_session=True,
        preexec_fn=_terminal_signals,
    )


def cli(main: Path, *args: object, env: dict[str, str] | None = None, timeout: float = 120):
    """Run ``main.py ARGS``; return (exit code, stdout, stderr)."""
    proc = start(main, *args, env=env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(predicate, timeout: float = 60.0, what: str = "the condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def catalogue(path: Path) -> pa.Table:
    """A written catalogue without its provenance (run id, times, paths)."""
    return pq.read_table(path).replace_schema_metadata(None)


def cfw_plugin(main: Path, *args: object) -> tuple[int, str, str]:
    """The command line in this process (no interpreter start-up), with the test finders."""
    import importlib

    from click.testing import CliRunner

    from clusterfw.core import cli as cli_module
    from clusterfw.core.plugins import Registry, get_plugin_manager

    if str(main.parent) not in sys.path:
        sys.path.insert(0, str(main.parent))
    plugin = importlib.import_module("scaleplugin")
    registry = Registry(get_plugin_manager(extra_plugins=[plugin]))
    cli_module._add_optional_commands(cli_module.cli)
    saved = cli_module.cli_registry
    cli_module.cli_registry = lambda: registry  # type: ignore[assignment]
    try:
        r = CliRunner().invoke(cli_module.cli, [str(a) for a in args])
    finally:
        cli_module.cli_registry = saved
    return r.exit_code, r.stdout, r.stderr
