"""Provenance recorded in catalogue schema metadata (keys namespaced ``clusterfw.``)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

import pyarrow as pa

import clusterfw
from clusterfw.core.schema import flags_metadata, schema_spec
from clusterfw.core.sky import InputFile


def plugin_record(kind: str, plugin: object, distribution: str = "") -> dict[str, object]:
    """Provenance entry of one plugin instance: name, kind, version, distribution, options."""
    options = getattr(plugin, "options", None)
    return {
        "name": getattr(plugin, "name", type(plugin).__name__),
        "kind": kind,
        "version": getattr(plugin, "version", "0"),
        "distribution": distribution,
        "options": options.model_dump(mode="json") if options is not None else {},
    }


def provenance_metadata(
    plugins: Iterable[dict[str, object]],
    inputs: Sequence[InputFile] = (),
    command: str | None = None,
    run_id: str | None = None,
    extra: dict[str, object] | None = None,
) -> dict[bytes, bytes]:
    """Schema metadata describing how a catalogue was made.

    Parameters
    ----------
    plugins : iterable of dict
        Entries from :func:`plugin_record`.
    inputs : sequence of InputFile
        Input files with their sha256.
    command : str, optional
        The command line; defaults to ``sys.argv`` joined.
    run_id : str, optional
        Defaults to a new UUID4.
    extra : dict, optional
        Further ``clusterfw.<key>`` entries (JSON-encoded).
    """
    spec = schema_spec()
    meta = {
        "clusterfw.version": clusterfw.__version__,
        "clusterfw.run_id": run_id or str(uuid.uuid4()),
        "clusterfw.created": datetime.now(UTC).isoformat(timespec="seconds"),
        "clusterfw.plugins": json.dumps(list(plugins)),
        "clusterfw.inputs": json.dumps([asdict(i) for i in inputs]),
        "clusterfw.command": command if command is not None else " ".join(sys.argv),
        "clusterfw.schema": f"{spec['name']} {spec['schema_version']}",
        "clusterfw.flags": json.dumps(flags_metadata()),
    }
    for key, value in (extra or {}).items():
        meta[f"clusterfw.{key}"] = value if isinstance(value, str) else json.dumps(value)
    return {k.encode(): v.encode() for k, v in meta.items()}


def with_provenance(table: pa.Table, metadata: dict[bytes, bytes]) -> pa.Table:
    """``table`` with ``metadata`` merged into its schema metadata."""
    merged = dict(table.schema.metadata or {})
    merged.update(metadata)
    return table.replace_schema_metadata(merged)
