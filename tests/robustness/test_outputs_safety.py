"""Outputs never overwrite inputs; output-side OS errors are one line naming path and reason."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterfw.core import atomic
from clusterfw.core.catalog_io import write_catalogue
from clusterfw.core.fits_io import write_flat_sky_fits
from clusterfw.core.schema import candidate_table
from tests.conftest import make_blob_sky
from tests.robustness.test_cli_options import cfw, one_error


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def files(tmp_path):
    sky, _, _ = make_blob_sky(size=96)
    maps = write_flat_sky_fits(sky, tmp_path, prefix="m")
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(30, 30.5, 10), rng.uniform(-20.5, -20, 10)
    cat = tmp_path / "cat.parquet"
    write_catalogue(
        candidate_table(finder="mf", score_kind="snr", ra=ra, dec=dec, score=np.arange(10.0)), cat
    )
    truth = tmp_path / "truth.parquet"
    pq.write_table(
        pa.table({"ra": ra, "dec": dec, "z": np.full(10, 0.5), "mvir": np.full(10, 5e14)}), truth
    )
    return tmp_path, maps, cat, truth


def _refused(rc: int, err: str, out: object, inp: object) -> None:
    assert one_error(rc, err) == (
        f"clusterfw: error: {out}: is the input {inp}; refusing to overwrite it"
    )


def test_run_out_is_an_input(files):
    d, maps, _, _ = files
    before = {p: sha(p) for p in maps}
    rc, _, err = cfw("run", *maps, "--out", maps[2], "-q")
    _refused(rc, err, maps[2], maps[2])
    # the same file through a symbolic link, ./ and .., and a hard link
    link = d / "link.fits"
    link.symlink_to(maps[1])
    rc, _, err = cfw("run", *maps, "--out", link, "-q")
    _refused(rc, err, link, maps[1])
    dotted = d / "." / "sub" / ".." / maps[0].name
    rc, _, err = cfw("run", *maps, "--out", dotted, "-q")
    _refused(rc, err, dotted, maps[0])
    hard = d / "hard.fits"
    os.link(maps[2], hard)
    rc, _, err = cfw("run", *maps, "--out", hard, "-q")
    _refused(rc, err, hard, maps[2])
    assert {p: sha(p) for p in maps} == before


def test_run_out_is_the_calibration(files):
    d, maps, _, _ = files
    cal = d / "cal.parquet"
    cal.write_text("{}")
    rc, _, err = cfw("run", *maps, "--calibration", cal, "--out", cal, "-q")
    _refused(rc, err, cal, cal)
    assert cal.read_text() == "{}"


def test_evaluate_calibrate_export_refuse_their_inputs(files, monkeypatch):
    d, _, cat, truth = files
    before = sha(cat), sha(truth)
    rc, _, err = cfw("evaluate", cat, "--truth", truth, "--json", cat)
    _refused(rc, err, cat, cat)
    rc, _, err = cfw("evaluate", cat, "--truth", truth, "--json", truth)
    _refused(rc, err, truth, truth)
    rc, _, err = cfw("evaluate", cat, "--truth", truth, "--plots", cat)
    _refused(rc, err, cat, cat)
    rc, _, err = cfw("calibrate", cat, "--truth", truth, "--out", cat)
    _refused(rc, err, cat, cat)
    monkeypatch.chdir(d)
    rc, _, err = cfw("export", "cat.parquet", "./cat.parquet")
    _refused(rc, err, "cat.parquet", "cat.parquet")
    assert (sha(cat), sha(truth)) == before


def test_simulate_config_inside_out_and_foreign_files(tmp_path):
    out = tmp_path / "sim"
    out.mkdir()
    cfg = out / "cfg.json"
    cfg.write_text("{}")
    rc, _, err = cfw("simulate", "mm", "--out", out, "--config", cfg)
    assert one_error(rc, err) == (
        f"clusterfw: error: {out}: output folder holds the input {cfg}; refusing to replace it"
    )
    cfg.rename(tmp_path / "cfg.json")
    (out / "catalogue.parquet").write_text("mine")
    rc, _, err = cfw("simulate", "mm", "--out", out, "--size", "0.3")
    assert one_error(rc, err) == (
        f"clusterfw: error: {out}: exists and holds files this command did not write "
        "(catalogue.parquet)"
    )
    assert (out / "catalogue.parquet").read_text() == "mine"


def test_output_is_a_folder_or_under_a_file(files):
    d, _, cat, _ = files
    (d / "x.csv").mkdir()
    rc, _, err = cfw("export", cat, d / "x.csv")
    assert one_error(rc, err) == f"clusterfw: error: {d / 'x.csv'}: Is a directory"
    (d / "plain").write_text("a file")
    target = d / "plain" / "sub" / "x.csv"
    rc, _, err = cfw("export", cat, target)
    assert one_error(rc, err) == f"clusterfw: error: {target}: Not a directory ({d / 'plain'})"
    assert sorted(p.name for p in (d / "x.csv").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder(files):
    d, _, cat, _ = files
    ro = d / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = cfw("export", cat, ro / "x.csv")
        assert one_error(rc, err) == f"clusterfw: error: {ro / 'x.csv'}: Permission denied ({ro})"
    finally:
        ro.chmod(0o755)


def test_full_disk_is_one_line_and_leaves_nothing(files, monkeypatch):
    d, _, cat, truth = files

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    import pyarrow.csv as pacsv

    monkeypatch.setattr(pacsv, "write_csv", full)
    before = sorted(p.name for p in d.iterdir())
    rc, _, err = cfw("export", cat, d / "out.csv")
    assert one_error(rc, err) == f"clusterfw: error: {d / 'out.csv'}: No space left on device"
    assert sorted(p.name for p in d.iterdir()) == before
    # the JSON writer of evaluate: the same one line
    monkeypatch.setattr(Path, "write_text", full)
    rc, _, err = cfw("evaluate", cat, "--truth", truth, "--json", d / "e.json")
    assert one_error(rc, err) == f"clusterfw: error: {d / 'e.json'}: No space left on device"
    assert sorted(p.name for p in d.iterdir()) == before


def test_unexpected_os_error_names_the_file(files, monkeypatch):
    """An OSError with a file name that no command converted is still one line, exit 2."""
    d, _, cat, _ = files

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(d / "elsewhere"))

    monkeypatch.setattr(atomic, "check_writable", denied)
    rc, _, err = cfw("export", cat, d / "o.csv")
    assert one_error(rc, err) == f"clusterfw: error: {d / 'elsewhere'}: Permission denied"


def test_stale_temporary_of_a_dead_process_is_removed(files):
    d, _, cat, _ = files
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    out = d / "o.parquet"
    stale = atomic.temp_name(out, pid)
    stale.write_bytes(b"half a catalogue")
    alive = atomic.temp_name(out, os.getppid())  # a live process's temporary stays
    alive.write_bytes(b"being written")
    rc, _, err = cfw("export", cat, out)
    assert rc == 0, err
    assert stale.name == f".o.parquet.clusterfw-tmp-{pid}.tmp"
    assert not stale.exists() and alive.exists()
    assert out.exists()
