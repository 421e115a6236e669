"""Small I/O helpers of the evaluation package: table reading and atomic JSON writing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import InputError


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """Read a table from Parquet, a HATS folder, FITS, CSV/ECSV or ``.npz`` (one array per column).

    Candidate catalogues written by ``clusterfw run`` are Parquet; truth catalogues may be any
    of these formats.

    Raises
    ------
    clusterfw.core.errors.InputError
        When the file is missing or cannot be read as a table.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(str(p), "no such file")
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix.lower() == ".gz" else p.suffix.lower()
    try:
        if suffix == ".hats" or (p.is_dir() and (p / "hats.properties").exists()):
            from clusterfw.core.catalog_io import read_catalogue

            return read_catalogue(p)  # a HATS catalogue folder (units from its sidecar)
        if suffix in (".parquet", ".pq", ".parq"):
            try:
                from clusterfw.core.catalog_io import read_catalogue
            except ImportError:  # catalogue I/O not available: plain Parquet
                import pyarrow.parquet as pq

                return pq.read_table(p)
            return read_catalogue(p)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as data:
                return pa.table({k: data[k] for k in data.files})
        if suffix in (".csv", ".ecsv", ".fits", ".fit", ".fits.gz", ".txt"):
            from astropy.table import Table

            fmt = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".txt": "ascii"}.get(suffix)
            t = Table.read(p, format=fmt) if fmt else Table.read(p)
            return pa.table({name: np.asarray(t[name]) for name in t.colnames})
        import pyarrow.parquet as pq

        return pq.read_table(p)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(str(p), f"cannot read table ({msg})") from exc


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays to plain Python; non-finite floats become ``null``."""
    return _jsonable(obj)


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (temporary file, then rename)."""
    from clusterfw.core.atomic import write_atomic

    text = json.dumps(to_jsonable(obj), indent=1, sort_keys=False, allow_nan=False) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))
