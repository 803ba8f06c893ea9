"""`PackWriter`: a worker's buffer of cache entries, written as one pack and its index when full or
flushed (the format: `agi_core.cache.packs`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from .entries import sha256_hex
from .pack_format import MAX_PACK_BYTES, MAX_PACK_ENTRIES, PACK_SCHEMA, PACK_SUFFIX, SMALL_ENTRY_BYTES, PackIndex
from .tempnames import temp_name

__all__ = ["PackWriter"]

_MISSING = object()  # a field an entry lacks, vs one it has as None


class PackWriter:
    """Buffers entries and writes them as one pack and its index (`flush`).

    Not thread-safe: one per worker process (or per thread). ``prefix``: the time part of the
    names (a rewrite passes the old pack's); by default the time of the first `add` after a flush.
    ``seal``: tags a whole index (`auth.CacheKey.seal`), given only by a writer that tagged every
    entry it adds itself (a worker storing what it computed), never by one copying entries."""

    def __init__(self, folder: Path, *, prefix: str | None = None, max_bytes: int = MAX_PACK_BYTES,
                 max_entries: int = MAX_PACK_ENTRIES, seal: Callable[[str], str] | None = None) -> None:
        self.folder = Path(folder)
        self._seal = seal
        self._prefix = prefix
        self._max_bytes, self._max_entries = max_bytes, max_entries
        self._seq = 0
        self.written: list[Path] = []  # every pack this writer flushed
        self._reset()

    def _reset(self) -> None:
        self._name: str | None = None
        self._where = ""  # the pack's path: its entries' location (one string, shared by every outcome of a send)
        self._bodies: list[bytes] = []
        self._rows: list[tuple[str, int, str, str, float, str]] = []  # key, size, sha256, partition, created, tag
        self._index: PackIndex | None = None
        self._meta: dict[str, Any] | None = None
        self._offset = 0

    def __len__(self) -> int:
        return len(self._bodies)

    @property
    def size(self) -> int:
        """Bytes of the results buffered for the next pack."""
        return self._offset

    @property
    def location(self) -> str:
        """The path of the pack being buffered (what `add` returned for its entries); "" when none is."""
        return self._where

    def _start(self, meta: dict[str, Any]) -> PackIndex:
        """Name the next pack (so `add` can say where its entries will be) and take its common fields."""
        self._seq += 1
        prefix = self._prefix or f"{time.time_ns():016x}"
        self._name = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}-{self._seq}"
        self._where = f"{self.folder / self._name}{PACK_SUFFIX}"
        self._index = PackIndex(self.folder, self._name, dict(meta))
        self._meta = meta  # the dict the common fields came from: the same object again needs no comparing
        return self._index

    def add(self, key: str, body: bytes, *, partition: str, created: float | None = None, replace: bool = False,
            outputs: list[dict[str, Any]] | None = None, files: str | None = None, tag: str | None = None,
            sha256: str | None = None, **meta: Any) -> str:
        """Buffer one entry (``body``: the pickled result); returns its location: the pack's path.
        ``meta`` (run_id, kernel, worker, …) is stored once per pack where entries agree."""
        return self.add_entry(key, body, partition, meta, created=created, replace=replace, outputs=outputs, files=files, tag=tag,
                              sha256=sha256)

    def add_entry(self, key: str, body: bytes, partition: str, meta: dict[str, Any], *, created: float | None = None,
                  replace: bool = False, outputs: list[dict[str, Any]] | None = None, files: str | None = None,
                  tag: str | None = None, sha256: str | None = None) -> str:
        """`add`, with ``meta`` as one dict: the per-partition path of a worker (no keyword packing)."""
        if self._bodies and (self._offset + len(body) > self._max_bytes or len(self._bodies) >= self._max_entries):
            self.flush()
        index = self._index or self._start(meta)
        position = len(self._rows)
        if meta is not self._meta and meta != index.common:
            extra = {k: v for k, v in meta.items() if index.common.get(k, _MISSING) != v}
            extra.update({k: None for k in index.common if k not in meta})
            index.extra[position] = extra
        if replace:
            index.replaced.add(position)
        if outputs:
            index.outputs[position] = outputs
        if files:
            index.files[position] = files
        # one row per entry, made columns at the flush (`zip`): six appends per entry were a third of its cost
        self._rows.append((key, len(body), sha256 or sha256_hex(body), partition, time.time() if created is None else created,
                           tag or ""))
        self._bodies.append(body)
        self._offset += len(body)
        return self._where

    def flush(self) -> Path | None:
        """Write the buffered entries: the pack, then its index, each under a temporary name
        renamed into place. Returns the pack's path (None when nothing was buffered). On failure
        nothing is left behind and the buffered entries are dropped (the caller reports them)."""
        index, bodies, rows, size = self._index, self._bodies, self._rows, self._offset
        if index is None or not bodies:
            return None
        self._reset()
        index.keys, index.sizes, index.sha256, index.partitions, index.created, index.tags = (list(column) for column in zip(*rows))
        if size <= len(rows) * SMALL_ENTRY_BYTES:
            whole = hashlib.sha256()
            for body in bodies:
                whole.update(body)
            index.pack_sha256 = whole.hexdigest()
        pack_path, index_path = index.pack, index.index
        columns = to_json(index.columns(), fallback=str)  # 5x faster than json.dumps: a flush per send
        digest = sha256_hex(columns)
        head = {"schema": PACK_SCHEMA, "pack": pack_path.name, "pack_size": sum(index.sizes), "count": len(index.keys),
                "common": index.common, "columns_sha256": digest}
        if self._seal is not None:
            head["seal"] = self._seal(digest)
        tmp_pack, tmp_index = self.folder / temp_name(pack_path.name), self.folder / temp_name(index_path.name)
        writing = tmp_pack
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp_pack, "wb") as handle:
                handle.writelines(bodies)
            os.rename(tmp_pack, pack_path)
            writing = tmp_index
            with open(tmp_index, "wb") as handle:
                handle.write(json.dumps(head, separators=(",", ":"), default=str).encode() + b"\n" + columns)
            os.rename(tmp_index, index_path)  # the commit point: from here on, readers see the entries
        except BaseException as exc:
            for path in (tmp_pack, tmp_index, pack_path):
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
                # a failed write() names no file (a full share): say which one, for the run's warning
                raise OSError(exc.errno, exc.strerror, str(writing)) from exc
            raise
        self.written.append(pack_path)
        return pack_path
