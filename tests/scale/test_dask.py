"""Issue 17: the same catalogue in-process, with --workers 2 and on Dask; Dask faults."""

from __future__ import annotations

import os
import signal
import socket

import numpy as np
import pytest

from tests.scale.helpers import catalogue, cfw_plugin, cli, start, wait_for

pytest.importorskip("distributed")
import dask  # noqa: E402

RUN = ("run", "--tile-size", "20", "-q")


def test_mf_in_process_workers_2_and_dask_identical(plugin_main, maps, dask_cluster, tmp_path):
    tables = {}
    for name, extra in {
        "inproc": (),
        "pool": ("--workers", "2"),
        "dask": ("--scheduler", dask_cluster.scheduler_address),
    }.items():
        out = tmp_path / f"{name}.parquet"
        rc, _, err = cfw_plugin(plugin_main, *RUN, *maps, "--out", out, *extra)
        assert rc == 0, err
        tables[name] = catalogue(out)
    assert tables["inproc"].num_rows == 10  # 12 decrements, two close pairs merged by mf
    assert tables["inproc"].equals(tables["pool"])
    assert tables["inproc"].equals(tables["dask"])  # bit for bit, provenance aside
    np.testing.assert_array_equal(tables["inproc"]["ra"], tables["dask"]["ra"])


def test_healpix_sky_in_process_and_dask_identical(plugin_main, dask_cluster, tmp_path):
    from tests.robustness.test_determinism import _healpix_files

    paths = _healpix_files(tmp_path)  # Nside 256, a polar cap: cores are nested HEALPix pixels
    tables = []
    for extra in ((), ("--scheduler", dask_cluster.scheduler_address)):
        out = tmp_path / f"hp{len(extra)}.parquet"
        rc, _, err = cfw_plugin(plugin_main, "run", *paths, "--out", out, "-q",
                                "--tile-size", "300", *extra)  # fmt: skip
        assert rc == 0, err
        tables.append(catalogue(out))
    assert tables[0].num_rows >= 3
    assert tables[0].equals(tables[1])


@pytest.mark.slow  # starts its own LocalCluster (10-60 s on two shared cores)
def test_dask_flag_starts_a_local_cluster(plugin_main, maps, tmp_path):
    ref, out = tmp_path / "ref.parquet", tmp_path / "dask.parquet"
    assert cli(plugin_main, *RUN, *maps, "--out", ref)[0] == 0
    rc, _, err = cli(plugin_main, "run", "--tile-size", "20", *maps, "--out", out,
                     "--dask", "--workers", "2")  # fmt: skip
    assert rc == 0, err
    assert "clusterfw: Dask dashboard: http://" in err
    assert catalogue(ref).equals(catalogue(out))


def test_sigkill_of_a_dask_worker_gives_the_same_catalogue(
    plugin_main, maps, dask_cluster, tmp_path
):
    ref = tmp_path / "ref.parquet"
    assert cfw_plugin(plugin_main, *RUN, "-f", "peaks", *maps, "--out", ref)[0] == 0
    marks = tmp_path / "marks"
    marks.mkdir()
    workers = {
        int(pid) for pid in distributed_pids(dask_cluster)
    }  # the worker processes (not the nannies)
    out = tmp_path / "cat.parquet"
    proc = start(plugin_main, *RUN, "-f", "peaks", *maps, "--out", out,
                 "--scheduler", dask_cluster.scheduler_address,
                 "-o", f"peaks.marks={marks}", "-o", "peaks.slow_seconds=0.4")  # fmt: skip
    try:
        wait_for(lambda: any(int(p.name.split(".")[0]) in workers for p in marks.iterdir()),
                 what="a tile on a worker", timeout=120)  # fmt: skip
    except AssertionError:
        proc.kill()
        raise AssertionError(f"{workers} {list(marks.iterdir())} {proc.communicate()}") from None
    victim = next(int(p.name.split(".")[0]) for p in marks.iterdir())
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    tiles = {p.name.split(".")[1] for p in marks.iterdir()}
    assert len(tiles) == 9  # every tile ran (the victim's again, elsewhere)
    assert catalogue(out).equals(catalogue(ref))


def distributed_pids(cluster) -> list[int]:
    from distributed import Client

    with Client(cluster) as client:
        return list(client.run(os.getpid).values())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


def test_unreachable_scheduler_is_one_line_and_exit_2(plugin_main, maps, tmp_path):
    out = tmp_path / "cat.parquet"
    address = f"tcp://127.0.0.1:{_closed_port()}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        rc, stdout, err = cfw_plugin(plugin_main, *RUN, *maps, "--out", out, "--scheduler", address)
    assert rc == 2
    assert err.startswith(f"clusterfw: error: --scheduler: cannot reach {address} within 1 s (")
    assert len(err.strip().splitlines()) == 1 and stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("where", ["in-process", "dask"])
def test_a_finder_that_raises_names_the_tile(plugin_main, maps, dask_cluster, tmp_path, where):
    out = tmp_path / "cat.parquet"
    extra = ("--scheduler", dask_cluster.scheduler_address) if where == "dask" else ()
    rc, stdout, err = cfw_plugin(plugin_main, *RUN, "-f", "boom", *maps, "--out", out, *extra,
                          "-o", "boom.boom_tile=4")  # fmt: skip
    assert rc == 2, err
    assert err.strip() == (
        "clusterfw: error: tile 4: finder 'boom' failed (RuntimeError: simulated failure)"
    )
    assert stdout == "" and not out.exists()


@pytest.mark.slow  # starts its own LocalCluster
def test_ctrl_c_closes_the_local_cluster(plugin_main, maps, tmp_path):
    marks, out = tmp_path / "marks", tmp_path / "cat.parquet"
    marks.mkdir()
    proc = start(plugin_main, *RUN, "-f", "peaks", *maps, "--out", out, "--dask",
                 "--workers", "2", "-o", f"peaks.marks={marks}",
                 "-o", "peaks.slow_seconds=30")  # fmt: skip
    wait_for(lambda: any(marks.iterdir()), timeout=120, what="a tile on a worker")
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "clusterfw: interrupted"
    assert not out.exists()
    pids = {int(p.name.split(".")[0]) for p in marks.iterdir()}
    wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=30, what="workers gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
