"""An audit's run folder: a manifest and Parquet shards of rows, safe to kill at any moment.

    out/manifest.json          fingerprints of the model, data and configuration; nbexplain's version and
                               method fingerprint (``nbexplain.about()``), and what a resume refuses
    out/rows/part-*.parquet    rows, each shard written to a temporary name and moved into place
    out/groups.parquet         the groups and their test figures (rewritten whenever they are)

A shard is whole or absent (``os.replace`` is atomic), so a killed audit loses at most the
shard it was writing; a leftover temporary file or a shard that does not read back is removed
and its images are explained again. Resuming subtracts the ids in the shards from the work.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ManifestMismatch
from .rows import ROW_SCHEMA

MANIFEST = "manifest.json"
ROWS = "rows"
GROUPS = "groups.parquet"


class AuditStore:
    def __init__(self, out):
        self.root = Path(out)
        self.rows_dir = self.root / ROWS

    # -- manifest ---------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def manifest(self) -> dict:
        if not self.exists:
            raise FileNotFoundError(f"{self.root} holds no audit (no {MANIFEST}); run nbexplain.audit(..., out=...) first")
        return json.loads((self.root / MANIFEST).read_text())

    def open(self, manifest: dict) -> None:
        """Start a new run folder, or check that the existing one is the same audit."""
        if self.exists:
            old = self.manifest()
            differ = [k for k in ("model", "data", "config") if old.get("fingerprints", {}).get(k) != manifest["fingerprints"][k]]
            if old.get("method") != manifest["method"]:
                # Another method explains differently: its rows and these must not mix. A version that
                # only changed the display or the documentation keeps the method fingerprint and resumes.
                raise ManifestMismatch(
                    f"{self.root} holds an audit made by nbexplain {old.get('nbexplain')} (method "
                    f"{old.get('method')}), this is {manifest['nbexplain']} (method {manifest['method']}): "
                    "the two explain differently. Pass another out= folder, or delete this one to start again."
                )
            if differ:
                was, now = old.get("fingerprints", {}), manifest["fingerprints"]
                detail = ", ".join(f"{k}: {was.get(k)} there, {now[k]} now" for k in differ)
                raise ManifestMismatch(
                    f"{self.root} holds an audit of another {' and '.join(differ)} "
                    f"({detail}); "
                    "resuming would mix two audits. Pass another out= folder, or delete this one to start again."
                )
            return
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.root / MANIFEST, json.dumps(manifest, indent=2).encode())

    # -- rows -------------------------------------------------------------------------------
    def write_rows(self, table: pa.Table) -> Path:
        """Add one shard of rows; whole or absent, whatever kills the process."""
        if table.num_rows == 0:
            raise ValueError("an empty shard")
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        first = min(table["id"].to_pylist())
        final = self.rows_dir / f"part-{first:09d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = final.with_suffix(".parquet.tmp")
        pq.write_table(table.cast(ROW_SCHEMA), tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final

    def clean(self) -> list[Path]:
        """Remove what a killed run left half-written; returns the removed paths."""
        removed = list(self.rows_dir.glob("*.tmp")) if self.rows_dir.is_dir() else []
        for path in self._shards():
            try:
                pq.read_metadata(path)
            except (pa.ArrowException, OSError):
                removed.append(path)
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def done_ids(self) -> set[int]:
        ids: set[int] = set()
        for path in self._shards():
            ids.update(pq.read_table(path, columns=["id"])["id"].to_pylist())
        return ids

    def read_rows(self, columns=None) -> pa.Table:
        """Every stored row once, sorted by id (a shard written twice by two runs counts once)."""
        shards = [pq.read_table(p, columns=columns) for p in self._shards()]
        if not shards:
            return ROW_SCHEMA.empty_table() if columns is None else ROW_SCHEMA.empty_table().select(columns)
        table = pa.concat_tables(shards).sort_by("id")
        ids = table["id"].to_numpy()
        if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
            keep = [0] + [k for k in range(1, len(ids)) if ids[k] != ids[k - 1]]
            table = table.take(keep)
        return table

    def _shards(self) -> list[Path]:
        return sorted(self.rows_dir.glob("part-*.parquet")) if self.rows_dir.is_dir() else []

    # -- groups -----------------------------------------------------------------------------
    def write_groups(self, table: pa.Table) -> None:
        tmp = self.root / f"{GROUPS}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.root / GROUPS)

    def read_groups(self) -> pa.Table | None:
        path = self.root / GROUPS
        return pq.read_table(path) if path.is_file() else None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
