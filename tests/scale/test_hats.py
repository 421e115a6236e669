"""Issue 17: HATS catalogues: round trip (rows, columns, units), info, evaluate, LSDB."""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from clusterfw.core.catalog_io import read_catalogue
from clusterfw.core.errors import ClusterfwError
from clusterfw.core.hats_io import SIDECAR, check_hats_output
from tests.conftest import car_wcs, make_blob_sky
from tests.robustness.test_cli_options import cfw, one_error

pytest.importorskip("lsdb")

RUN = ("run", "--tile-size", "20", "-q")


@pytest.fixture(scope="module")
def hats_run(tmp_path_factory, maps):
    """One run written as Parquet and as HATS, and the truth of the tiny sky."""
    d = tmp_path_factory.mktemp("hats")
    for out in (d / "cat.parquet", d / "cat.hats"):
        rc, _, err = cfw(*RUN, *maps, "--out", out)
        assert rc == 0, err
    _, xs, ys = make_blob_sky(size=120)
    ra, dec = car_wcs(120, 120, 0.5).pixel_to_world_values(xs, ys)
    truth = pa.table({"ra": np.asarray(ra), "dec": np.asarray(dec),
                      "z": np.full(xs.size, 0.5), "mvir": np.full(xs.size, 5e14)})  # fmt: skip
    pq.write_table(truth, d / "truth.parquet")
    return d


def _by_id(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("candidate_id", "ascending")]))


def test_hats_round_trip_rows_columns_units(hats_run):
    parquet = read_catalogue(hats_run / "cat.parquet")
    hats = read_catalogue(hats_run / "cat.hats")
    assert hats.num_rows == parquet.num_rows == 10
    assert hats.column_names == parquet.column_names
    for f in parquet.schema:
        got = hats.schema.field(f.name)
        assert got.type == f.type, f.name
        assert (got.metadata or {}).get(b"unit") == (f.metadata or {}).get(b"unit"), f.name
        assert (got.metadata or {}).get(b"description") == (f.metadata or {}).get(b"description")
    assert hats.schema.field("ra").metadata[b"unit"] == b"deg"
    assert _by_id(hats).equals(_by_id(parquet))  # values, bit for bit
    meta = hats.schema.metadata
    assert meta[b"clusterfw.version"] == parquet.schema.metadata[b"clusterfw.version"]
    props = (hats_run / "cat.hats" / "hats.properties").read_text()
    assert "hats_nrows=10" in props and f"clusterfw_schema={SIDECAR}" in props


def test_info_and_evaluate_read_hats(hats_run):
    rc, out, err = cfw("info", hats_run / "cat.hats", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["rows"] == 10
    units = {c["name"]: c["unit"] for c in doc["columns"]}
    assert units["ra"] == "deg" and units["dec"] == "deg"
    assert "clusterfw.version" in doc["provenance"]
    report = hats_run / "eval.json"
    rc, out, err = cfw("evaluate", hats_run / "cat.hats", "--truth", hats_run / "truth.parquet",
                       "--mass-min", "1e14", "--z-min", "0", "--json", report)  # fmt: skip
    assert rc == 0, err
    truth = hats_run / "truth.parquet"
    rc2, out2, _ = cfw("evaluate", hats_run / "cat.parquet", "--truth", truth,
                       "--mass-min", "1e14", "--z-min", "0")  # fmt: skip
    assert out.splitlines()[0].replace("cat.hats", "X") == out2.splitlines()[0].replace(
        "cat.parquet", "X"
    )


@pytest.mark.slow  # imports lsdb and runs its Dask graphs: ~10 s on a quiet two-core machine
def test_lsdb_opens_and_crossmatches_with_truth(hats_run):
    import lsdb

    cat = lsdb.open_catalog(hats_run / "cat.hats")
    assert len(cat.compute()) == 10
    truth = pq.read_table(hats_run / "truth.parquet").to_pandas()
    truth_cat = lsdb.from_dataframe(truth, ra_column="ra", dec_column="dec", margin_threshold=120)
    matched = cat.crossmatch(truth_cat, radius_arcsec=60, n_neighbors=1,
                             suffixes=("", "_truth"), suffix_method="all_columns")  # fmt: skip
    frame = matched.compute()
    strong = read_catalogue(hats_run / "cat.parquet").filter(pc.field("score") > 5)
    # every candidate above SNR 5 lies within 1' of a true decrement (the 10th is noise)
    assert sorted(frame["candidate_id"]) == sorted(strong["candidate_id"].to_pylist())
    assert len(frame) == 9 and float(frame["_dist_arcsec"].max()) < 20


def test_hats_output_refuses_a_foreign_folder_and_a_missing_extra(maps, tmp_path, monkeypatch):
    out = tmp_path / "cat.hats"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, _, err = cfw(*RUN, *maps, "--out", out)
    assert one_error(rc, err) == (
        f"clusterfw: error: {out}: exists and holds files this command did not write (notes.txt)"
    )
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    monkeypatch.setitem(sys.modules, "lsdb", None)
    with pytest.raises(ClusterfwError, match=r"needs the 'hats' extra \(pip install"):
        check_hats_output(tmp_path / "other.hats")
