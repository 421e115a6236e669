"""Catalogue writing: schema validation, formats, atomicity (also under SIGKILL)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
import pyarrow as pa
import pytest
from astropy.table import QTable

from clusterfw.core.catalog_io import read_catalogue, write_catalogue
from clusterfw.core.errors import SchemaError
from clusterfw.core.provenance import plugin_record, provenance_metadata, with_provenance
from clusterfw.core.schema import candidate_table, healpix29, plugin_field, validate_candidates


def _table(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return candidate_table(
        finder="peak",
        score_kind="snr",
        ra=rng.uniform(0, 360, n),
        dec=rng.uniform(-80, 80, n),
        score=rng.uniform(4, 20, n),
        tile_id=3,
        optional={"snr": rng.uniform(4, 20, n), "filter_scale": np.full(n, 1.5)},
        extra={
            "peak_npix": (
                plugin_field("peak_npix", pa.int32(), "", "pixels"),
                rng.integers(1, 9, n),
            )
        },
    )


def test_schema_checks():
    table = _table()
    validate_candidates(table)
    assert table.schema.field("ra").metadata[b"unit"] == b"deg"
    assert (
        table["healpix_29"].to_numpy()[0]
        == healpix29(table["ra"].to_numpy()[:1], table["dec"].to_numpy()[:1])[0]
    )
    with pytest.raises(SchemaError, match="missing required column 'score'"):
        validate_candidates(table.drop_columns(["score"]))
    with pytest.raises(SchemaError, match="column 'score' has type double"):
        validate_candidates(table.set_column(3, "score", table["score"].cast(pa.float64())))
    with pytest.raises(SchemaError, match="lacks a plugin prefix"):
        validate_candidates(table, prefixes=("mf",))
    with pytest.raises(SchemaError, match="lacks unit/description"):
        validate_candidates(table.append_column("peak_x", pa.array(np.zeros(50))))
    with pytest.raises(SchemaError, match="duplicate"):
        validate_candidates(pa.concat_tables([table, table]))


def test_parquet_roundtrip_with_units_and_provenance(tmp_path):
    meta = provenance_metadata(
        [plugin_record("finder", type("F", (), {"name": "peak"})())], command="clusterfw run test"
    )
    table = with_provenance(_table(), meta)
    path = write_catalogue(table, tmp_path / "c.parquet")
    back = read_catalogue(path)
    assert back.equals(table.unify_dictionaries(), check_metadata=False)
    assert pa.types.is_dictionary(back.schema.field("finder").type)
    assert back.schema.metadata[b"clusterfw.command"] == b"clusterfw run test"
    qt = QTable.read(path)
    assert qt["filter_scale"].unit == u.arcmin
    assert qt["ra"].unit == u.deg
    assert qt["ra"].info.description == "Right ascension (ICRS)"
    assert "peak_npix" in qt.colnames


def test_invalid_table_writes_nothing(tmp_path):
    out = tmp_path / "bad.parquet"
    with pytest.raises(SchemaError):
        write_catalogue(_table().drop_columns(["dec"]), out)
    assert list(tmp_path.iterdir()) == []


def test_kill_during_write_leaves_no_catalogue(tmp_path):
    """SIGKILL while the Parquet bytes are being written: the target never appears."""
    out = tmp_path / "cat.parquet"
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        import pyarrow.parquet as pq
        from clusterfw.core import catalog_io
        from clusterfw.core.schema import candidate_table
        real = pq.write_table
        def slow_write(table, where, **kw):
            real(table, where, **kw)
            with open(where, "r+b") as fh:      # half-written file on disk
                fh.truncate(fh.seek(0, 2) // 2)
            print("writing", flush=True)
            time.sleep(60)
        catalog_io.pq.write_table = slow_write
        n = 1000
        t = candidate_table(finder="peak", score_kind="snr", ra=np.linspace(0, 10, n),
                            dec=np.zeros(n), score=np.ones(n))
        catalog_io.write_catalogue(t, {str(out)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".cat.parquet.") and p.suffix == ".tmp" for p in leftovers)


def test_reading_another_schema_major_version_warns(tmp_path):
    meta = provenance_metadata([], command="x")
    meta[b"clusterfw.schema"] = b"clusterfw.candidate 9.0"
    path = write_catalogue(with_provenance(_table(), meta), tmp_path / "old.parquet")
    with pytest.warns(UserWarning, match="written with candidate schema 9.0"):
        read_catalogue(path)
