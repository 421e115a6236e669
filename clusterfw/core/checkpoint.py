"""Per-tile checkpoints: a killed run resumes where it stopped, with the same catalogue.

A checkpoint folder holds

- ``manifest.json``: the *fingerprint* of the run (what decides the tile results: every input
  file's name, size and sha256, each finder's name, version and options, the tile size, the
  band and header overrides, whether forced scores are computed, the clusterfw version) and
  its sha256, plus the number of tiles;
- ``tiles/tile-<index>.arrow``: one Arrow IPC file per finished tile, written atomically
  (temporary file + rename, :mod:`clusterfw.core.atomic`), holding each finder's candidate
  table and the forced scores and coverage, each as an Arrow IPC stream in one row.

Arrow IPC keeps every value, type and metadata key exactly, so a tile read back equals the tile
computed. A folder made by a run with another fingerprint is refused with one line naming what
differs (it would mix catalogues). Nothing here uses pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.atomic import OutputError, write_atomic
from clusterfw.core.errors import ClusterfwError
from clusterfw.core.pipeline import TileResult

FORMAT = "clusterfw-checkpoint 1"
MANIFEST = "manifest.json"


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a fingerprint."""
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _from_ipc(blob: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(blob)).read_all()


def encode_result(result: TileResult) -> pa.Table:
    """One tile's result as a table of (part, Arrow IPC stream) rows."""
    parts: list[tuple[str, bytes]] = [(f"table:{k}", _ipc(t)) for k, t in result.tables.items()]
    for name, (ra, dec, score) in result.forced.items():
        parts.append((f"forced:{name}", _ipc(pa.table({"ra": ra, "dec": dec, "value": score}))))
    for name, (ra, dec, mask) in result.covered.items():
        parts.append((f"covered:{name}", _ipc(pa.table({"ra": ra, "dec": dec, "value": mask}))))
    return pa.table(
        {
            "part": pa.array([p for p, _ in parts], pa.string()),
            "ipc": pa.array([b for _, b in parts], pa.binary()),
        },
        metadata={"clusterfw.checkpoint": FORMAT, "tile_id": str(result.tile_id)},
    )


def decode_result(table: pa.Table) -> TileResult:
    """Inverse of :func:`encode_result`."""
    meta = table.schema.metadata or {}
    result = TileResult(int(meta[b"tile_id"]), {})
    parts, blobs = table.column("part").to_pylist(), table.column("ipc").to_pylist()
    for part, blob in zip(parts, blobs, strict=True):
        kind, _, name = part.partition(":")
        data = _from_ipc(blob)
        if kind == "table":
            result.tables[name] = data
            continue
        arrays = tuple(np.asarray(data.column(c).to_numpy()) for c in ("ra", "dec", "value"))
        target = result.forced if kind == "forced" else result.covered
        target[name] = (arrays[0], arrays[1], arrays[2])
    return result


class Checkpoint:
    """A checkpoint folder for one run (see the module docstring).

    Parameters
    ----------
    folder : Path
        Created when missing.
    fingerprint : mapping
        What decides the tile results (JSON-serialisable).
    """

    def __init__(self, folder: str | os.PathLike[str], fingerprint: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.fingerprint = dict(fingerprint)
        self.hash = fingerprint_hash(self.fingerprint)
        self.n_tiles: int | None = None

    @property
    def tiles_dir(self) -> Path:
        """Where the tile files are."""
        return self.folder / "tiles"

    def tile_path(self, index: int) -> Path:
        """The file of tile ``index``."""
        return self.tiles_dir / f"tile-{index:06d}.arrow"

    def check(self) -> None:
        """Refuse a folder that is not a checkpoint of this run (before any work).

        Raises
        ------
        ClusterfwError
            ``--checkpoint: DIR: ...`` naming what differs, or why the folder is unusable.
        """
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise ClusterfwError(f"--checkpoint: {folder}: exists and is not a folder")
        manifest = folder / MANIFEST
        if not folder.exists():
            return
        if not manifest.exists():
            if any(folder.iterdir()):
                raise ClusterfwError(
                    f"--checkpoint: {folder}: not a clusterfw checkpoint (no {MANIFEST}) and not "
                    "empty"
                )
            return
        stored = self._read_manifest()
        if stored.get("hash") != self.hash:
            theirs = stored.get("fingerprint", {})
            keys = sorted(
                k
                for k in set(theirs) | set(self.fingerprint)
                if json.dumps(theirs.get(k), sort_keys=True, default=str)
                != json.dumps(self.fingerprint.get(k), sort_keys=True, default=str)
            )
            what = ", ".join(keys) if keys else "fingerprint"
            raise ClusterfwError(
                f"--checkpoint: {folder}: made by a run with other inputs or options (differs: "
                f"{what}); use another folder, or delete this one to start again"
            )

    def _read_manifest(self) -> dict[str, Any]:
        path = self.folder / MANIFEST
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ClusterfwError(f"--checkpoint: {path}: unreadable manifest ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ClusterfwError(f"--checkpoint: {path}: not a {FORMAT} manifest")
        return doc

    def start(self, n_tiles: int) -> None:
        """Write the manifest (first run) or check the tile count (resume)."""
        self.check()
        manifest = self.folder / MANIFEST
        if manifest.exists():
            stored = self._read_manifest()
            if stored.get("n_tiles") != n_tiles:
                raise ClusterfwError(
                    f"--checkpoint: {self.folder}: made for {stored.get('n_tiles')} tiles, this "
                    f"run has {n_tiles}"
                )
        else:
            doc = {
                "format": FORMAT,
                "hash": self.hash,
                "n_tiles": n_tiles,
                "fingerprint": self.fingerprint,
            }
            text = json.dumps(doc, indent=1, sort_keys=True, default=str)
            write_atomic(manifest, lambda tmp: Path(tmp).write_text(text))
        try:
            self.tiles_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.tiles_dir, exc.strerror or str(exc)) from None
        self.n_tiles = n_tiles

    def finished(self) -> list[int]:
        """Indices of the tiles already saved (complete files only)."""
        if not self.tiles_dir.is_dir():
            return []
        out = []
        for path in self.tiles_dir.iterdir():
            name = path.name
            if name.startswith("tile-") and name.endswith(".arrow"):
                try:
                    index = int(name[5:-6])
                except ValueError:
                    continue
                if self.n_tiles is None or 0 <= index < self.n_tiles:
                    out.append(index)
        return sorted(out)

    def save(self, index: int, result: TileResult) -> Path:
        """Write tile ``index`` atomically."""
        table = encode_result(result)

        def write(tmp: Path) -> None:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)

        return write_atomic(self.tile_path(index), write)

    def load(self, index: int) -> TileResult:
        """Read tile ``index`` back.

        Raises
        ------
        ClusterfwError
            When the file is not a readable checkpoint tile.
        """
        path = self.tile_path(index)
        try:
            with pa.OSFile(str(path), "rb") as source:
                table = pa.ipc.open_file(source).read_all()
            if (table.schema.metadata or {}).get(b"clusterfw.checkpoint") != FORMAT.encode():
                raise ValueError("not a checkpoint tile")
            return decode_result(table)
        except (OSError, ValueError, KeyError, pa.ArrowInvalid) as exc:
            raise ClusterfwError(
                f"--checkpoint: {path}: unreadable tile ({exc}); delete it to rerun the tile"
            ) from None
