"""Issue 17: per-tile checkpoints; a killed run resumes with the same catalogue."""

from __future__ import annotations

import os
import signal

import numpy as np
import pyarrow as pa

from clusterfw.core.checkpoint import Checkpoint, decode_result, encode_result
from clusterfw.core.pipeline import TileResult
from clusterfw.core.schema import candidate_table
from tests.robustness.test_cli_options import cfw, one_error
from tests.scale.helpers import catalogue, cfw_plugin, start, wait_for

RUN = ("run", "--tile-size", "20", "-q")


def test_tile_result_round_trips_exactly():
    ra = np.array([10.123456789012345, 10.5])
    table = candidate_table(finder="mf", score_kind="snr", ra=ra, dec=np.array([-5.0, -5.25]),
                            score=np.array([7.25, 5.5], np.float32), tile_id=3)  # fmt: skip
    forced = (ra, np.array([-5.0, -5.25]), np.array([7.25, np.nan]))
    covered = (ra, np.array([-5.0, -5.25]), np.array([True, False]))
    result = TileResult(3, {"mf": table}, {"mf": forced}, {"mf": covered})
    back = decode_result(encode_result(result))
    assert back.tile_id == 3
    assert back.tables["mf"].equals(table, check_metadata=True)
    for got, want in zip(back.forced["mf"], forced, strict=True):
        np.testing.assert_array_equal(got, want)
    assert back.covered["mf"][2].dtype == bool and back.covered["mf"][2].tolist() == [True, False]


def test_sigkill_of_the_run_then_resume_gives_the_same_catalogue(plugin_main, maps, tmp_path):
    ref = tmp_path / "ref.parquet"
    rc, _, err = cfw_plugin(plugin_main, *RUN, "-f", "peaks", *maps, "--out", ref)
    assert rc == 0, err
    marks, ck, out = tmp_path / "marks", tmp_path / "ck", tmp_path / "cat.parquet"
    marks.mkdir()
    args = (*RUN, "-f", "peaks", *maps, "--out", out, "--checkpoint", ck,
            "-o", f"peaks.marks={marks}", "-o", "peaks.slow_seconds=0.3")  # fmt: skip
    proc = start(plugin_main, *args)
    wait_for(lambda: len(list((ck / "tiles").glob("tile-*.arrow"))) >= 3
             if (ck / "tiles").is_dir() else False, what="three saved tiles")  # fmt: skip
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    saved = len(list((ck / "tiles").glob("tile-*.arrow")))
    assert 3 <= saved < 9
    before = len(list(marks.iterdir()))
    rc, _, err = cfw_plugin(plugin_main, *args)
    assert rc == 0, err
    assert len(list(marks.iterdir())) - before == 9 - saved  # finished tiles were not rerun
    assert catalogue(out).equals(catalogue(ref))
    # a third run finds every tile done, and gives the same catalogue again
    out.unlink()
    assert cfw_plugin(plugin_main, *args)[0] == 0
    assert len(list(marks.iterdir())) - before == 9 - saved
    assert catalogue(out).equals(catalogue(ref))


def test_checkpoint_of_other_options_or_inputs_is_refused(maps, tmp_path):
    ck = tmp_path / "ck"
    first = tmp_path / "a.parquet"
    rc, _, err = cfw(*RUN, *maps, "--out", first, "--checkpoint", ck, "-o", "mf.snr_min=5")
    assert rc == 0, err
    assert (ck / "manifest.json").exists() and len(list((ck / "tiles").iterdir())) == 9
    out = tmp_path / "b.parquet"
    rc, _, err = cfw(*RUN, *maps, "--out", out, "--checkpoint", ck, "-o", "mf.snr_min=6")
    assert one_error(rc, err) == (
        f"clusterfw: error: --checkpoint: {ck}: made by a run with other inputs or options "
        "(differs: finders); use another folder, or delete this one to start again"
    )
    rc, _, err = cfw(*RUN, *maps[:2], "--out", out, "--checkpoint", ck, "-o", "mf.snr_min=5")
    assert "(differs: inputs)" in one_error(rc, err)
    rc, _, err = cfw(*RUN, *maps, "--out", out, "--checkpoint", ck, "-o", "mf.snr_min=5",
                     "--tile-size", "30")  # fmt: skip
    assert "(differs: tile_size_arcmin)" in one_error(rc, err)
    rc, _, err = cfw(*RUN, *maps, "--out", out, "--checkpoint", ck, "-o", "mf.snr_min=5",
                     "--tile-grid", "mm")  # fmt: skip
    assert "(differs: tile_grid)" in one_error(rc, err)
    assert not out.exists()
    # the same arguments resume (here: every tile is done) and give the same catalogue
    rc, _, err = cfw(*RUN, *maps, "--out", out, "--checkpoint", ck, "-o", "mf.snr_min=5")
    assert rc == 0, err
    assert catalogue(out).equals(catalogue(first))


def test_a_folder_that_is_not_a_checkpoint_is_refused(maps, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "notes.txt").write_text("mine")
    out = tmp_path / "a.parquet"
    rc, _, err = cfw(*RUN, *maps, "--out", out, "--checkpoint", ck)
    assert one_error(rc, err) == (
        f"clusterfw: error: --checkpoint: {ck}: not a clusterfw checkpoint (no manifest.json) "
        "and not empty"
    )
    assert not out.exists() and (ck / "notes.txt").read_text() == "mine"


def test_checkpoint_manifest_records_the_fingerprint(tmp_path):
    ck = Checkpoint(tmp_path / "ck", {"inputs": [{"name": "a.fits", "sha256": "00"}]})
    ck.start(4)
    assert ck.finished() == []
    ck.save(2, TileResult(2, {"x": pa.table({"a": [1]})}))
    assert ck.finished() == [2]
    assert ck.load(2).tables["x"].equals(pa.table({"a": [1]}))
    again = Checkpoint(tmp_path / "ck", {"inputs": [{"name": "a.fits", "sha256": "00"}]})
    again.start(4)
    assert again.finished() == [2]
