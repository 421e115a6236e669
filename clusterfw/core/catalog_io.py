"""Catalogue input/output: Parquet (the native format), FITS, CSV and ECSV exports.

Parquet files are written atomically with zstd compression. Units and descriptions travel in
the Arrow field metadata *and* in astropy's ``table_meta_yaml`` key, so both
``pyarrow.parquet.read_table`` and ``astropy.table.QTable.read`` see them. Dictionary-typed
string columns (``finder``, ``score_kind``) are stored as plain strings (Parquet
dictionary-encodes them on disk anyway) and come back as dictionaries from
:func:`read_catalogue`. A ``.hats`` output is a HATS catalogue folder (see
:mod:`clusterfw.core.hats_io`; the ``hats`` extra), read back by :func:`read_catalogue` too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clusterfw.core.atomic import write_atomic
from clusterfw.core.errors import InputError
from clusterfw.core.schema import schema_spec, validate_candidates

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".csv": "csv",
    ".ecsv": "ecsv",
    ".hats": "hats",
}


def catalogue_format(path: str | Path) -> str:
    """The output format implied by a file name's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            str(path),
            f"unknown catalogue format {suffix!r} (use .parquet, .fits, .csv, .ecsv or .hats)",
        )
    return FORMATS[suffix]


def _plain_strings(table: pa.Table) -> pa.Table:
    """Cast dictionary columns to plain strings (for formats without dictionaries)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            col = table.column(i).cast(f.type.value_type)
            table = table.set_column(
                i, pa.field(f.name, f.type.value_type, f.nullable, f.metadata), col
            )
    return table


def _provenance_dict(table: pa.Table) -> dict[str, str]:
    meta = table.schema.metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"clusterfw.")}


def to_qtable(table: pa.Table):
    """An :class:`astropy.table.QTable` with units, descriptions and provenance in ``meta``."""
    import astropy.units as u
    from astropy.table import QTable

    table = _plain_strings(table)
    qt = QTable(meta=_provenance_dict(table))
    for f, col in zip(table.schema, table.columns, strict=True):
        meta = f.metadata or {}
        unit = meta.get(b"unit", b"").decode()
        if pa.types.is_string(f.type):
            values = np.array(col.to_pylist(), dtype=str)
        elif pa.types.is_boolean(f.type):
            values = np.array([bool(v) for v in col.fill_null(False).to_pylist()], dtype=bool)
        else:
            values = col.to_numpy(zero_copy_only=False)
        if unit:
            values = values * u.Unit(unit)
        qt[f.name] = values
        qt[f.name].info.description = meta.get(b"description", b"").decode()
    return qt


def _astropy_yaml(table: pa.Table) -> dict[bytes, bytes]:
    """Schema metadata that lets ``astropy.table.QTable.read`` restore units and descriptions."""
    from astropy.table import meta as table_meta

    qt = to_qtable(table)
    out = {b"table_meta_yaml": "\n".join(table_meta.get_yaml_from_table(qt)).encode()}
    for name in qt.colnames:
        if qt[name].dtype.kind == "U":
            out[f"table::len::{name}".encode()] = str(max(qt[name].dtype.itemsize // 4, 1)).encode()
    return out


def write_catalogue(table: pa.Table, path: str | Path, validate: bool = True) -> Path:
    """Validate ``table`` and write it atomically; the format follows the suffix.

    Parameters
    ----------
    table : pyarrow.Table
        A candidate table (see ``catalog_schema/``).
    path : str or Path
        ``.parquet`` (zstd), ``.fits``, ``.csv``, ``.ecsv`` or ``.hats`` (a HATS folder).
    validate : bool
        Check the table against the schema first (default True).

    Returns
    -------
    Path
    """
    path = Path(path)
    fmt = catalogue_format(path)
    if validate:
        validate_candidates(table)
    if fmt == "hats":
        from clusterfw.core.hats_io import write_hats

        return write_hats(table, path)
    if fmt == "parquet":
        plain = _plain_strings(table)
        meta = dict(plain.schema.metadata or {})
        meta.update(_astropy_yaml(table))
        plain = plain.replace_schema_metadata(meta)
        return write_atomic(path, lambda tmp: pq.write_table(plain, tmp, compression="zstd"))
    if fmt == "csv":
        import pyarrow.csv as pacsv

        plain = _plain_strings(table)
        return write_atomic(path, lambda tmp: pacsv.write_csv(plain, tmp))
    qt = to_qtable(table)
    if fmt == "fits":
        qt.meta = {"CFWPROV": json.dumps(qt.meta)} if qt.meta else {}
        return write_atomic(path, lambda tmp: qt.write(tmp, format="fits", overwrite=True))
    return write_atomic(path, lambda tmp: qt.write(tmp, format="ascii.ecsv", overwrite=True))


def write_table_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write any Arrow table (e.g. a truth catalogue) as zstd Parquet, atomically, unvalidated."""
    return write_atomic(Path(path), lambda tmp: pq.write_table(table, tmp, compression="zstd"))


_DICTIONARY_COLUMNS = ("finder", "score_kind")


def read_catalogue(path: str | Path) -> pa.Table:
    """Read a Parquet catalogue (or a HATS folder) into a :class:`pyarrow.Table`.

    Schema types are restored (``finder``/``score_kind`` as dictionaries), and for HATS the
    units, descriptions and provenance from its sidecar.

    Raises
    ------
    InputError
        If the file is missing or not a Parquet file / HATS catalogue.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "file not found")
    from clusterfw.core.hats_io import is_hats_path, read_hats

    if is_hats_path(path):
        table = read_hats(path)
        for i, f in enumerate(table.schema):
            if f.name in _DICTIONARY_COLUMNS and not pa.types.is_dictionary(f.type):
                col = table.column(i).dictionary_encode()
                table = table.set_column(i, pa.field(f.name, col.type, f.nullable, f.metadata), col)
        _check_schema_version(path, table)
        return table
    try:
        names = pq.read_schema(path).names
        table = pq.read_table(path, read_dictionary=[c for c in _DICTIONARY_COLUMNS if c in names])
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(str(path), f"not a readable Parquet file ({exc})") from None
    _check_schema_version(path, table)
    return table


def _check_schema_version(path: Path, table: pa.Table) -> None:
    """Warn when a catalogue was written with another major version of the schema."""
    written = (table.schema.metadata or {}).get(b"clusterfw.schema", b"").decode().split()
    if len(written) != 2:
        return
    ours = schema_spec()["schema_version"]
    if written[1].split(".")[0] != ours.split(".")[0]:
        warnings.warn(
            f"{path}: written with candidate schema {written[1]}, this clusterfw reads {ours}",
            UserWarning,
            stacklevel=3,
        )


def read_qtable(path: str | Path):
    """Read a Parquet catalogue as an :class:`astropy.table.QTable` with units."""
    return to_qtable(read_catalogue(path))


def provenance(table: pa.Table) -> dict[str, object]:
    """The ``clusterfw.*`` schema metadata of a table, JSON values decoded."""
    out: dict[str, object] = {}
    for key, value in _provenance_dict(table).items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
