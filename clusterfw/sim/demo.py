"""The demo sky: a small deterministic simulated patch, generated once and cached.

``clusterfw run`` without input uses it. The patch is 2° × 2° at 0.25' (480 × 480 pixels, three
SPT-3G-like bands, all default components, seed :data:`DEMO_SEED`), small enough for the matched
filter and a small CNN to run in well under a minute. It is written with
:func:`clusterfw.sim.patch.write_patch` to ``<cache>/demo-v<version>/`` where ``<cache>`` is
``$CLUSTERFW_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("clusterfw")``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterfw.core.hookspecs import hookimpl

if TYPE_CHECKING:
    import pyarrow as pa

    from clusterfw.core.sky import Sky
    from clusterfw.sim.config import PatchConfig

DEMO_SEED = 2021
DEMO_VERSION = "1"
DEMO_PREFIX = "demo"


def _demo_config() -> PatchConfig:
    from clusterfw.sim.config import PatchConfig

    return PatchConfig(
        size_deg=2.0, pixel_arcmin=0.25, projection="CAR", ra_deg=60.0, dec_deg=-45.0
    )


def __getattr__(name: str) -> Any:
    # DEMO_CONFIG is built on first use: this module is a plugin loaded at every CLI start
    if name == "DEMO_CONFIG":
        return _demo_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cache_dir() -> Path:
    """The clusterfw cache directory (``$CLUSTERFW_CACHE_DIR`` or the platform default)."""
    env = os.environ.get("CLUSTERFW_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("clusterfw"))


def _expected(directory: Path) -> dict[str, object]:
    return {
        "directory": directory,
        "maps": [directory / f"{DEMO_PREFIX}_{b.name}.fits" for b in _demo_config().bands],
        "halos": directory / "truth_halos.parquet",
        "sources": directory / "truth_sources.parquet",
        "ymap": directory / "truth_ymap.fits",
    }


def demo_paths(regenerate: bool = False) -> dict[str, object]:
    """Paths of the cached demo sky, simulating and writing it on first use.

    Parameters
    ----------
    regenerate : bool
        Rebuild even if a cached copy exists.

    Returns
    -------
    dict
        ``directory``, ``maps`` (list of FITS paths, one per band), ``halos``, ``sources``
        (truth Parquet) and ``ymap`` (FITS).
    """
    from clusterfw.sim.truth import SIM_VERSION

    root = cache_dir()
    target = root / f"demo-v{SIM_VERSION}.{DEMO_VERSION}"
    paths = _expected(target)
    files = [*paths["maps"], paths["halos"], paths["sources"], paths["ymap"]]  # type: ignore[misc]
    if not regenerate and all(Path(p).exists() for p in files):
        return paths
    from clusterfw.sim.patch import simulate_patch, write_patch

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=root))
    try:
        write_patch(simulate_patch(_demo_config(), DEMO_SEED), tmp, prefix=DEMO_PREFIX)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race; use its copy
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return paths


def demo_sky(regenerate: bool = False) -> tuple[Sky, pa.Table]:
    """The demo sky and its halo truth table.

    Returns
    -------
    sky : clusterfw.core.sky.Sky
        Read back from the cached FITS files (so ``sky.inputs`` records their sha256).
    halos : pyarrow.Table
        Halo truth (``ra``, ``dec``, ``z``, ``m500c``, ``m200c``, ``mvir``, ``y500`` …).
    """
    import pyarrow.parquet as pq

    from clusterfw.core.fits_io import read_flat_fits

    paths = demo_paths(regenerate)
    sky = read_flat_fits(paths["maps"])  # type: ignore[arg-type]
    return sky, pq.read_table(paths["halos"])


@hookimpl(trylast=True)
def clusterfw_demo_inputs() -> list[str]:
    """The demo sky's map files (simulated and cached on first use) for ``clusterfw run``."""
    return [str(p) for p in demo_paths()["maps"]]  # type: ignore[attr-defined]


@hookimpl(trylast=True)
def clusterfw_register_commands(cli: Any) -> None:
    """Add the simulator's ``simulate`` command group to ``clusterfw``."""
    try:
        from clusterfw.sim.cli import simulate
    except ImportError:  # the simulator's extras are not installed
        return
    cli.add_command(simulate, "simulate")
