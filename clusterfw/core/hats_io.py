"""HATS catalogues (``--out catalogue.hats``): Parquet partitioned by HEALPix, LSDB-ready.

Written through ``lsdb.from_dataframe(...).write_catalog(...)`` (the ``hats`` extra: ``pip
install 'clusterfw[hats]'``), which adds the ``_healpix_29`` index column HATS requires and
partitions the rows by adaptive HEALPix tiles. HATS keeps neither the Arrow field metadata
(``unit``, ``description``, ``ucd``) nor the table's ``clusterfw.*`` provenance, so both travel
in a sidecar, ``clusterfw_schema.json`` beside ``hats.properties`` (named there as
``clusterfw_schema``), which :func:`read_hats` applies when reading the catalogue back.

The folder is written atomically (a temporary folder beside it, renamed into place,
:func:`clusterfw.core.atomic.atomic_dir`): a killed run leaves no half catalogue, and an existing
folder is replaced only when it is a HATS catalogue (nothing else in it is ever deleted).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clusterfw.core.atomic import atomic_dir, check_replaceable
from clusterfw.core.errors import ClusterfwError, InputError

SIDECAR = "clusterfw_schema.json"
#: The entries a HATS catalogue folder written by lsdb holds (anything else is not replaced).
HATS_ENTRIES = frozenset(
    {
        "dataset",
        "properties",
        "hats.properties",
        "partition_info.csv",
        "point_map.fits",
        "skymap.fits",
        "per_partition_statistics.parquet",
        "data_thumbnail.parquet",
        SIDECAR,
    }
)
_SKYMAP = re.compile(r"skymap\.\d+\.fits")
#: Most rows per HATS partition (a partition is one Parquet file).
PARTITION_ROWS = 500_000


def _extra_error(exc: ImportError) -> ClusterfwError:
    return ClusterfwError(
        f"--out: writing HATS needs the 'hats' extra (pip install 'clusterfw[hats]'): {exc}"
    )


def is_hats_path(path: str | Path) -> bool:
    """Whether ``path`` names a HATS catalogue (suffix ``.hats``, or a folder with properties)."""
    p = Path(path)
    return p.suffix.lower() == ".hats" or (p.is_dir() and (p / "hats.properties").exists())


def _keep(entry: Path) -> bool:
    return entry.name in HATS_ENTRIES or bool(_SKYMAP.fullmatch(entry.name))


def check_hats_output(path: str | Path) -> None:
    """Refuse, before any work, a HATS output that cannot be written.

    Raises
    ------
    ClusterfwError
        The ``hats`` extra is missing, or ``path`` is a file or a folder holding other files.
    """
    try:
        import hats  # noqa: F401
        import lsdb  # noqa: F401
    except ImportError as exc:
        raise _extra_error(exc) from None
    check_replaceable(path, _keep)


def _field_record(field: pa.Field) -> dict[str, Any]:
    meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    return {
        "name": field.name,
        "type": str(field.type),
        "nullable": field.nullable,
        "metadata": meta,
    }


def sidecar_document(table: pa.Table) -> dict[str, Any]:
    """The sidecar's content: each field's metadata and the table's schema metadata."""
    schema_meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return {
        "format": "clusterfw-hats-sidecar 1",
        "columns": [_field_record(f) for f in table.schema],
        "metadata": schema_meta,
    }


def write_hats(table: pa.Table, path: str | Path, catalog_name: str | None = None) -> Path:
    """Write a candidate table as a HATS catalogue folder (atomically).

    Parameters
    ----------
    table : pyarrow.Table
        A validated candidate table (``ra``/``dec`` in degrees).
    path : str or Path
        The catalogue folder (conventionally ``*.hats``).
    catalog_name : str, optional
        HATS ``obs_collection``; the folder's stem by default.

    Returns
    -------
    Path
    """
    try:
        import lsdb
        import pandas as pd
    except ImportError as exc:
        raise _extra_error(exc) from None
    path = Path(path)
    name = catalog_name or path.stem or "clusterfw"
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    sidecar = json.dumps(sidecar_document(table), indent=1, sort_keys=True)
    with atomic_dir(path, _keep) as tmp, warnings.catch_warnings():
        # lsdb/nested-pandas deprecation notices are not the user's business
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", category=Warning, module=r"(lsdb|nested_pandas|hats)")
        target = tmp / "catalogue"
        catalog = lsdb.from_dataframe(
            frame,
            ra_column="ra",
            dec_column="dec",
            lowest_order=0,
            highest_order=7,
            partition_rows=PARTITION_ROWS,
            margin_threshold=None,
        )
        catalog.write_catalog(
            target,
            catalog_name=name,
            as_collection=False,
            progress_bar=False,
            error_if_empty=False,
            addl_hats_properties={"clusterfw_schema": SIDECAR},
        )
        (target / SIDECAR).write_text(sidecar)
        for entry in target.iterdir():
            entry.rename(tmp / entry.name)
        target.rmdir()
    return path


def _partition_files(path: Path) -> list[Path]:
    def key(p: Path) -> tuple[int, int]:
        order = int(p.parent.parent.name.split("=")[1])
        npix = int(p.stem.split("=")[1])
        return order, npix

    files = list((path / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet"))
    try:
        return sorted(files, key=key)
    except (IndexError, ValueError):
        return sorted(files)


def read_hats(path: str | Path, keep_index: bool = False) -> pa.Table:
    """Read a HATS catalogue folder into one Arrow table, units and provenance restored.

    Rows come in HEALPix order (partition by partition). ``_healpix_29`` (the HATS index,
    equal to the catalogue's ``healpix_29``) is dropped unless ``keep_index``.

    Raises
    ------
    InputError
        When the folder is not a readable HATS catalogue.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(str(path), "not a HATS catalogue folder")
    if not (path / "hats.properties").exists() and not (path / "properties").exists():
        raise InputError(str(path), "not a HATS catalogue (no hats.properties)")
    files = _partition_files(path)
    try:
        parts = [pq.read_table(f) for f in files]
        if parts:
            table = pa.concat_tables(parts, promote_options="permissive")
        else:
            table = pq.read_schema(path / "dataset" / "_common_metadata").empty_table()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(str(path), f"unreadable HATS partition ({exc})") from None
    for hive in ("Norder", "Dir", "Npix"):
        if hive in table.column_names:
            table = table.drop_columns([hive])
    if not keep_index and "_healpix_29" in table.column_names:
        table = table.drop_columns(["_healpix_29"])
    sidecar = path / SIDECAR
    if sidecar.exists():
        try:
            doc = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(str(sidecar), f"unreadable sidecar ({exc})") from None
        table = apply_sidecar(table, doc)
    return table


def apply_sidecar(table: pa.Table, doc: dict[str, Any]) -> pa.Table:
    """Put the sidecar's field metadata and schema metadata back on ``table``.

    Columns are put back in the sidecar's order (any others follow).
    """
    records = {c["name"]: c for c in doc.get("columns", [])}
    order = [c["name"] for c in doc.get("columns", []) if c["name"] in table.column_names]
    order += [n for n in table.column_names if n not in records]
    table = table.select(order)
    fields = []
    for f, col in zip(table.schema, table.columns, strict=True):
        record = records.get(f.name, {})
        meta = record.get("metadata")
        if meta:
            f = f.with_metadata({k.encode(): v.encode() for k, v in meta.items()})
        if record.get("nullable") is False and col.null_count == 0:
            f = f.with_nullable(False)
        fields.append(f)
    schema_meta = {k.encode(): v.encode() for k, v in doc.get("metadata", {}).items()}
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields, metadata=schema_meta))
