"""The candidate-table contract: Arrow schema built from ``catalog_schema/candidate.json``.

Finders build their output with :func:`candidate_table`; every table is checked with
:func:`validate_candidates` before it is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clusterfw.core.errors import SchemaError

HEALPIX_ORDER = 29

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint32": pa.uint32(),
    "bool": pa.bool_(),
    "dictionary<string>": pa.dictionary(pa.int32(), pa.string()),
}


@lru_cache(maxsize=1)
def schema_spec() -> dict[str, Any]:
    """The parsed machine-readable schema (``catalog_schema/candidate.json``)."""
    text = resources.files("clusterfw").joinpath("catalog_schema", "candidate.json").read_text()
    return json.loads(text)


@lru_cache(maxsize=1)
def flag_spec() -> dict[str, Any]:
    """The parsed flag declarations (``catalog_schema/flags.json``)."""
    text = resources.files("clusterfw").joinpath("catalog_schema", "flags.json").read_text()
    return json.loads(text)


def flag_bits(plugin: str | None = None) -> dict[int, tuple[str, str]]:
    """Declared flag bits: ``value -> (name, description)``.

    Parameters
    ----------
    plugin : str, optional
        Also the bits this plugin declares under ``plugins`` in ``flags.json``.
    """
    spec = flag_spec()
    out = {int(k): (v["name"], v["description"]) for k, v in spec["global"].items()}
    if plugin is not None:
        for k, v in spec.get("plugins", {}).get(plugin, {}).items():
            out[int(k)] = (v["name"], v["description"])
    return out


def flag_bit(name: str, plugin: str | None = None) -> int:
    """The value of a declared flag bit by name (``flag_bit("merged") == 8``).

    Raises
    ------
    KeyError
        When no such bit is declared in ``catalog_schema/flags.json``.
    """
    for value, (bit_name, _) in flag_bits(plugin).items():
        if bit_name == name:
            return value
    where = "global" if plugin is None else f"global or {plugin!r}"
    raise KeyError(f"no {where} flag bit named {name!r} in catalog_schema/flags.json")


def flags_metadata(plugins: tuple[str, ...] = ()) -> dict[str, str]:
    """``bit value -> "name: description"`` (the ``clusterfw.flags`` provenance entry)."""
    out: dict[int, tuple[str, str]] = {}
    for p in (None, *plugins):
        out.update(flag_bits(p))
    return {str(k): f"{name}: {desc}" for k, (name, desc) in sorted(out.items())}


def finder_flags_field(finder: str) -> pa.Field:
    """The ``<finder>_flags`` field of a combined table (uint32, the finder's ``flags``)."""
    return plugin_field(
        f"{finder}_flags",
        pa.uint32(),
        "",
        f"flags of finder {finder}'s detection (bits: catalog_schema/flags.json); null where it "
        "did not detect the candidate",
        "meta.code.qual",
    )


def _column_specs() -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in schema_spec()["columns"]}


def field_metadata(unit: str = "", description: str = "", ucd: str = "") -> dict[bytes, bytes]:
    """Arrow field metadata carrying unit, description and UCD."""
    return {b"unit": unit.encode(), b"description": description.encode(), b"ucd": ucd.encode()}


def schema_field(name: str) -> pa.Field:
    """The Arrow field of a standard column, with its metadata."""
    spec = _column_specs()[name]
    return pa.field(
        name,
        _TYPES[spec["type"]],
        nullable=spec["nullable"],
        metadata=field_metadata(spec["unit"], spec["description"], spec["ucd"]),
    )


def plugin_field(
    name: str, dtype: pa.DataType, unit: str = "", description: str = "", ucd: str = ""
) -> pa.Field:
    """An Arrow field for a plugin-specific column (its name must start with the plugin name)."""
    return pa.field(name, dtype, nullable=True, metadata=field_metadata(unit, description, ucd))


def required_columns() -> list[str]:
    """Names of the columns every candidate table must have, in canonical order."""
    return [c["name"] for c in schema_spec()["columns"] if c["required"]]


def standard_columns() -> list[str]:
    """Names of all columns defined by the schema (required and optional)."""
    return [c["name"] for c in schema_spec()["columns"]]


def healpix29(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Nested HEALPix index at order 29 of positions in degrees."""
    import healpy as hp

    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if ra.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(hp.ang2pix(2**HEALPIX_ORDER, ra, dec, nest=True, lonlat=True), np.int64)


def candidate_table(
    *,
    finder: str,
    score_kind: str,
    ra: np.ndarray,
    dec: np.ndarray,
    score: np.ndarray,
    tile_id: int | np.ndarray = -1,
    candidate_id: np.ndarray | None = None,
    optional: Mapping[str, np.ndarray] | None = None,
    extra: Mapping[str, tuple[pa.Field, np.ndarray]] | None = None,
    prefixes: tuple[str, ...] = (),
) -> pa.Table:
    """Build a schema-conforming candidate table.

    Parameters
    ----------
    finder : str
        Name of the producing plugin (also the required prefix of ``extra`` columns).
    score_kind : str
        What ``score`` means (``snr``, ``probability``, ``rank_product`` ...).
    ra, dec : array_like
        Positions in degrees (ICRS).
    score : array_like
        Higher is more cluster-like.
    tile_id : int or array_like
        Tile that owns each candidate.
    candidate_id : array_like of str, optional
        Defaults to ``<finder>-t<tile_id>-<index>``.
    optional : mapping, optional
        Values for optional standard columns (``snr``, ``filter_scale``, ``y_c`` ...).
    extra : mapping, optional
        ``name -> (field, values)`` for plugin-specific columns, built with :func:`plugin_field`.
    prefixes : tuple of str
        Further allowed column prefixes besides ``finder`` (a combiner adds its inputs' names).

    Returns
    -------
    pyarrow.Table
    """
    ra = np.asarray(ra, dtype=np.float64) % 360.0
    dec = np.asarray(dec, dtype=np.float64)
    n = ra.size
    tiles = np.broadcast_to(np.asarray(tile_id, dtype=np.int32), (n,))
    if candidate_id is None:  # "<finder>-t<tile_id>-<index, 5 digits>"
        index = pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 5, "0")
        tile_str = pc.cast(pa.array(np.ascontiguousarray(tiles)), pa.string())
        ids = pc.binary_join_element_wise(f"{finder}-t", tile_str, "-", index, "")
    else:
        ids = pa.array(list(candidate_id), pa.string())
    columns: dict[str, pa.Array] = {
        "candidate_id": ids,
        "ra": pa.array(ra, pa.float64()),
        "dec": pa.array(dec, pa.float64()),
        "score": pa.array(np.asarray(score, dtype=np.float32), pa.float32()),
        "score_kind": pa.array([score_kind] * n, pa.string()).dictionary_encode(),
        "finder": pa.array([finder] * n, pa.string()).dictionary_encode(),
        "tile_id": pa.array(np.ascontiguousarray(tiles), pa.int32()),
        "healpix_29": pa.array(healpix29(ra, dec), pa.int64()),
    }
    fields = [schema_field(name) for name in columns]
    for name, values in (optional or {}).items():
        f = schema_field(name)
        fields.append(f)
        columns[name] = pa.array(np.asarray(values), f.type, from_pandas=True)
    for name, (f, values) in (extra or {}).items():
        if f.name != name:
            raise SchemaError(f"extra column key {name!r} does not match its field {f.name!r}")
        fields.append(f)
        columns[name] = pa.array(np.asarray(values), f.type, from_pandas=True)
    table = pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))
    validate_candidates(table, prefixes=(finder, *prefixes))
    return table


def empty_candidates(finder: str, score_kind: str) -> pa.Table:
    """A zero-row candidate table with the required columns."""
    empty = np.zeros(0)
    return candidate_table(finder=finder, score_kind=score_kind, ra=empty, dec=empty, score=empty)


def validate_candidates(table: pa.Table, prefixes: tuple[str, ...] | None = None) -> None:
    """Check a table against the candidate schema.

    Parameters
    ----------
    table : pyarrow.Table
    prefixes : tuple of str, optional
        Allowed prefixes of non-standard column names. ``None`` allows any prefix but still
        requires unit and description metadata on every non-standard column.

    Raises
    ------
    SchemaError
        Naming the first problem found.
    """
    specs = _column_specs()
    names = table.column_names
    for name in required_columns():
        if name not in names:
            raise SchemaError(f"missing required column {name!r}")
    for name in names:
        f = table.schema.field(name)
        if name in specs:
            want = _TYPES[specs[name]["type"]]
            got = f.type
            if pa.types.is_dictionary(want):
                ok = pa.types.is_dictionary(got) and pa.types.is_string(got.value_type)
            else:
                ok = got == want
            if not ok:
                raise SchemaError(f"column {name!r} has type {got}, schema wants {want}")
            if not specs[name]["nullable"] and table.column(name).null_count:
                raise SchemaError(f"column {name!r} has null values")
        else:
            meta = f.metadata or {}
            if b"unit" not in meta or b"description" not in meta:
                raise SchemaError(f"column {name!r} lacks unit/description field metadata")
            if prefixes is not None and not any(name.startswith(p + "_") for p in prefixes):
                raise SchemaError(
                    f"column {name!r} is not a standard column and lacks a plugin prefix "
                    f"({', '.join(p + '_' for p in prefixes)})"
                )
    if table.num_rows:
        dec = table.column("dec").to_numpy()
        ra = table.column("ra").to_numpy()
        if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
            raise SchemaError("columns 'ra'/'dec' have NaN or infinite positions")
        if not np.all(np.isfinite(table.column("score").to_numpy())):
            raise SchemaError("column 'score' has NaN or infinite values")
        if np.any(np.abs(dec) > 90):
            raise SchemaError("column 'dec' has values outside [-90, 90]")
        ids = table.column("candidate_id")
        if len(pc.unique(ids)) != table.num_rows:
            raise SchemaError("column 'candidate_id' has duplicate values")


def concat_candidates(tables: list[pa.Table]) -> pa.Table:
    """Concatenate candidate tables (tile outputs of one finder), unifying dictionaries."""
    tables = [t for t in tables if t is not None]
    if not tables:
        raise ValueError("no tables to concatenate")
    out = pa.concat_tables(tables, promote_options="default")
    return out.unify_dictionaries().combine_chunks()
