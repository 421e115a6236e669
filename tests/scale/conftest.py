"""A Dask LocalCluster shared by the scale tests (started once: ~5-10 s on two cores)."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from tests.scale.helpers import tiny_maps, write_plugin


@pytest.fixture(scope="session")
def plugin_main(tmp_path_factory):
    """``main.py``: the clusterfw CLI with the test finders (peaks, boom)."""
    return write_plugin(tmp_path_factory.mktemp("scaleplugin"))


@pytest.fixture(scope="session")
def maps(tmp_path_factory):
    """The tiny 3-band flat sky."""
    return tiny_maps(tmp_path_factory.mktemp("maps"))


@pytest.fixture(scope="session")
def dask_cluster(plugin_main):
    """A 2-worker process LocalCluster whose workers can import the test finders."""
    distributed = pytest.importorskip("distributed")
    path = os.pathsep.join([str(plugin_main.parent), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(plugin_main.parent))  # the scheduler (here) unpickles scattered data
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        env={"PYTHONPATH": path},
    )
    try:
        yield cluster
    finally:
        cluster.close(timeout=10)
        sys.path.remove(str(plugin_main.parent))
