"""The completeness table of a selection function (overall and per tile), with provenance."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.selection.grid import MassRedshiftGrid, wilson_interval

COLUMNS = {
    "tile": "tile_id of the tile (null: the whole map)",
    "m500c_lo": "lower M500c edge of the cell, Msun",
    "m500c_hi": "upper M500c edge of the cell, Msun",
    "z_lo": "lower redshift edge of the cell",
    "z_hi": "upper redshift edge of the cell",
    "completeness": "fraction of clusters of the cell recovered above the catalogue threshold",
    "completeness_err": "1-sigma error: half-width of the Wilson interval (injection) or the "
    "spread of the cell's analytic values",
    "completeness_lo": "lower 1-sigma bound (Wilson) of the completeness",
    "completeness_hi": "upper 1-sigma bound (Wilson) of the completeness",
    "n_injected": "clusters injected in the cell (0 for the analytic path)",
    "n_recovered": "injected clusters recovered",
}
UNITS = {"m500c_lo": "solMass", "m500c_hi": "solMass"}


def _fields() -> list[pa.Field]:
    types = {
        "tile": pa.int64(),
        "n_injected": pa.int64(),
        "n_recovered": pa.int64(),
    }
    out = []
    for name, desc in COLUMNS.items():
        meta = {b"description": desc.encode()}
        if name in UNITS:
            meta[b"unit"] = UNITS[name].encode()
        out.append(pa.field(name, types.get(name, pa.float64()), metadata=meta))
    return out


def _rows(
    grid: MassRedshiftGrid,
    tile: int | None,
    completeness: np.ndarray,
    err: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    n: np.ndarray,
    k: np.ndarray,
) -> dict[str, list[Any]]:
    nm, nz = grid.shape
    im, iz = np.divmod(np.arange(grid.n_cells), nz)
    return {
        "tile": [tile] * grid.n_cells,
        "m500c_lo": grid.m_edges[im].tolist(),
        "m500c_hi": grid.m_edges[im + 1].tolist(),
        "z_lo": grid.z_edges[iz].tolist(),
        "z_hi": grid.z_edges[iz + 1].tolist(),
        "completeness": np.asarray(completeness, float).tolist(),
        "completeness_err": np.asarray(err, float).tolist(),
        "completeness_lo": np.asarray(lo, float).tolist(),
        "completeness_hi": np.asarray(hi, float).tolist(),
        "n_injected": np.asarray(n, np.int64).tolist(),
        "n_recovered": np.asarray(k, np.int64).tolist(),
    }


def counts_rows(
    grid: MassRedshiftGrid, tile: int | None, n: np.ndarray, k: np.ndarray
) -> dict[str, list[Any]]:
    """Rows of injected/recovered counts: completeness k/n with its Wilson interval."""
    _, lo, hi = wilson_interval(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    err = np.where(n > 0, (hi - lo) / 2.0, np.nan)
    return _rows(grid, tile, frac, err, lo, hi, n, k)


def analytic_rows(
    grid: MassRedshiftGrid, tile: int | None, completeness: np.ndarray, spread: np.ndarray
) -> dict[str, list[Any]]:
    """Rows of analytic completeness (no injections)."""
    c = np.asarray(completeness, float)
    s = np.asarray(spread, float)
    zero = np.zeros(grid.n_cells, dtype=np.int64)
    return _rows(grid, tile, c, s, np.clip(c - s, 0, 1), np.clip(c + s, 0, 1), zero, zero)


def build_table(
    parts: Sequence[Mapping[str, list[Any]]], provenance: Mapping[str, Any]
) -> pa.Table:
    """Concatenate row blocks into the completeness table, provenance in the schema metadata.

    ``provenance`` entries are stored JSON-encoded under ``clusterfw.<key>``.
    """
    fields = _fields()
    data: dict[str, list[Any]] = {f.name: [] for f in fields}
    for part in parts:
        for key in data:
            data[key].extend(part[key])
    meta = {
        f"clusterfw.{k}".encode(): (
            v if isinstance(v, str) else json.dumps(v, default=str)
        ).encode()
        for k, v in provenance.items()
    }
    schema = pa.schema(fields, metadata=meta)
    return pa.table({f.name: pa.array(data[f.name], f.type) for f in fields}, schema=schema)


def write_table(table: pa.Table, path: Path) -> Path:
    """Write the completeness table atomically: ``.parquet`` (zstd) or ``.fits``."""
    from clusterfw.core.atomic import write_atomic

    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    from astropy.table import Table

    t = Table()
    for f in table.schema:
        col = table.column(f.name).to_numpy(zero_copy_only=False)
        if f.name == "tile":
            col = np.array([-1 if v is None else v for v in table.column(f.name).to_pylist()])
        t[f.name] = col
        if f.name in UNITS:
            t[f.name].unit = UNITS[f.name]
    prov = {
        k.decode().removeprefix("clusterfw."): v.decode()
        for k, v in (table.schema.metadata or {}).items()
    }
    t.meta["CFWPROV"] = json.dumps(prov)  # long string: FITS CONTINUE cards
    t.meta["COMMENT"] = "tile = -1: the whole map; CFWPROV: the provenance (JSON)"
    return write_atomic(path, lambda tmp: t.write(tmp, format="fits", overwrite=True))


def read_table(path: Path) -> pa.Table:
    """Read a completeness table written by :func:`write_table` (Parquet)."""
    import pyarrow.parquet as pq

    from clusterfw.core.errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(str(path), f"not a readable Parquet file ({exc})") from None
    missing = [
        c
        for c in ("m500c_lo", "m500c_hi", "z_lo", "z_hi", "completeness")
        if c not in table.column_names
    ]
    if missing:
        raise InputError(str(path), f"not a selection-function table (no {', '.join(missing)})")
    return table


def overall(table: pa.Table) -> pa.Table:
    """The rows of the whole map (``tile`` null)."""
    import pyarrow.compute as pc

    if "tile" not in table.column_names:
        return table
    return table.filter(pc.is_null(table.column("tile")))
