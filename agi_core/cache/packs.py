"""Pack files: many cache entries written by one worker in one go, found through one small index.

One file per entry cost a file creation per partition (0.1-1.6 ms on a busy disk), which made
100,000 tiny partitions several times slower with the cache than without. A worker now buffers
the entries it computes and writes them together::

    packs/<name>.pack    the pickled results, back to back
    packs/<name>.index   line 1: JSON header (schema, pack size, count, the fields all rows share,
                         SHA-256 of line 2); line 2: a JSON array, one row per entry (`Row`)

``<name>`` is ``<16 hex digits of time_ns>-<pid>-<random>-<sequence>``: unique per writer without
any lock, and sortable by when it was written. The pack is written under a ``.tmp-`` name and
renamed into place, then the index the same way: an index exists only once its pack is whole, and
a reader lists indexes only. A writer killed half-way leaves at most a ``.tmp-`` file or a pack
without an index, which no reader sees and `agi cache gc` removes. Nothing is ever rewritten in
place: dropping entries (`rewrite_without`) writes a new pack of the others, renames it in, then
unlinks the old index and pack, so a reader sees the old pack, the new one, or both (same key,
same content). Only renames and unlinks are used: safe on NFS, where locks are not.

Each row keeps room for an authentication tag (``tag``, None for now), so a keyed MAC per entry
can be added without changing the layout.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> writer = PackWriter(folder)
>>> location = writer.add("ab" * 32, b"result bytes", partition="p1", run_id="r1")
>>> pack = writer.flush()
>>> ref, rows = read_index(pack.with_suffix(INDEX_SUFFIX))
>>> row_header(ref, rows[0])["partition"], row_header(ref, rows[0])["run_id"], location.endswith("#" + "ab" * 32)
('p1', 'r1', True)
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .entries import ENTRY_SCHEMA, CorruptEntry, check_body, sha256_hex

__all__ = ["INDEX_SUFFIX", "PACK_SCHEMA", "PACK_SUFFIX", "PACKS", "PackRef", "PackWriter", "Row", "list_indexes",
           "read_bodies", "read_index", "rewrite_without", "row_header"]

PACK_SCHEMA = "agi.cache.pack.v1"
PACKS = "packs"  # the folder of packs, in an app's cache folder
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".index"
#: a writer flushes by itself past these (a pack stays small enough to read whole)
MAX_PACK_BYTES = 64 << 20
MAX_PACK_ENTRIES = 20_000

#: one entry of an index: [key, offset, size, sha256, partition, created, replace, outputs, files, tag, extra]
Row = list[Any]
KEY, OFFSET, SIZE, SHA256, PARTITION, CREATED, REPLACE, OUTPUTS, FILES, TAG, EXTRA = range(11)


@dataclass(frozen=True)
class PackRef:
    """One pack as its index describes it: where it is, and the fields all its rows share."""

    folder: Path
    name: str
    common: dict[str, Any] = field(default_factory=dict)
    size: int = 0

    @property
    def pack(self) -> Path:
        return self.folder / f"{self.name}{PACK_SUFFIX}"

    @property
    def index(self) -> Path:
        return self.folder / f"{self.name}{INDEX_SUFFIX}"

    @property
    def prefix(self) -> str:
        """The time part of its name: a rewrite keeps it, so the rewritten pack sorts where the old one did."""
        return self.name.split("-", 1)[0]


def row_header(ref: PackRef, row: Row) -> dict[str, Any]:
    """The entry's header, as a single-file entry would have it (plus ``pack`` and ``offset``)."""
    return {"schema": ENTRY_SCHEMA, "key": row[KEY], "partition": row[PARTITION], "created": row[CREATED], "size": row[SIZE],
            "sha256": row[SHA256], "outputs": row[OUTPUTS], "files": row[FILES], **ref.common, **(row[EXTRA] or {}),
            "tag": row[TAG], "replaced": bool(row[REPLACE]), "pack": ref.name, "offset": row[OFFSET]}


class PackWriter:
    """Buffers entries and writes them as one pack and its index (`flush`).

    Not thread-safe: one per worker process (or per thread). ``prefix``: the time part of the
    names (a rewrite passes the old pack's); by default the time of the first `add` after a flush."""

    def __init__(self, folder: Path, *, prefix: str | None = None, max_bytes: int = MAX_PACK_BYTES,
                 max_entries: int = MAX_PACK_ENTRIES) -> None:
        self.folder = Path(folder)
        self._prefix = prefix
        self._max_bytes, self._max_entries = max_bytes, max_entries
        self._seq = 0
        self._reset()

    def _reset(self) -> None:
        self._name: str | None = None
        self._bodies: list[bytes] = []
        self._rows: list[Row] = []
        self._offset = 0
        self._common: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def name(self) -> str:
        """The name the next flush writes (fixed at the first `add`, so `add` can say where its entry will be)."""
        if self._name is None:
            self._seq += 1
            prefix = self._prefix or f"{time.time_ns():016x}"
            self._name = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}-{self._seq}"
        return self._name

    def add(self, key: str, body: bytes, *, partition: str, created: float | None = None, replace: bool = False,
            outputs: list[dict[str, Any]] | None = None, files: str | None = None, tag: str | None = None,
            sha256: str | None = None, **meta: Any) -> str:
        """Buffer one entry (``body``: the pickled result); returns its location, ``<pack>#<key>``.
        ``meta`` (run_id, kernel, worker, …) is stored once per pack where rows agree."""
        if self._rows and (self._offset + len(body) > self._max_bytes or len(self._rows) >= self._max_entries):
            self.flush()
        if self._common is None:
            self._common = dict(meta)
        extra = {k: v for k, v in meta.items() if self._common.get(k, _MISSING) != v}
        extra.update({k: None for k in self._common if k not in meta})
        self._rows.append([key, self._offset, len(body), sha256 or sha256_hex(body), partition,
                           time.time() if created is None else created, bool(replace), outputs or [], files, tag, extra or None])
        self._bodies.append(body)
        self._offset += len(body)
        return f"{self.folder / self.name}{PACK_SUFFIX}#{key}"

    def flush(self) -> Path | None:
        """Write the buffered entries: the pack, then its index, each under a temporary name
        renamed into place. Returns the pack's path (None when nothing was buffered). On failure
        nothing is left behind and the buffered entries are dropped (the caller reports them)."""
        if not self._rows:
            return None
        name = self.name
        pack, index = self.folder / f"{name}{PACK_SUFFIX}", self.folder / f"{name}{INDEX_SUFFIX}"
        rows = json.dumps(self._rows, separators=(",", ":"), default=str).encode()
        head = {"schema": PACK_SCHEMA, "pack": pack.name, "pack_size": self._offset, "count": len(self._rows),
                "common": self._common or {}, "rows_sha256": sha256_hex(rows)}
        tmp_pack, tmp_index = self.folder / f".tmp-{pack.name}", self.folder / f".tmp-{index.name}"
        bodies = self._bodies
        self._reset()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp_pack, "wb") as handle:
                handle.writelines(bodies)
            os.rename(tmp_pack, pack)
            with open(tmp_index, "wb") as handle:
                handle.write(json.dumps(head, separators=(",", ":"), default=str).encode() + b"\n" + rows)
            os.rename(tmp_index, index)  # the commit point: from here on, readers see the entries
        except BaseException:
            for path in (tmp_pack, tmp_index, pack):
                path.unlink(missing_ok=True)
            raise
        return pack


_MISSING = object()


def list_indexes(folder: Path) -> list[Path]:
    """The indexes in ``folder``, oldest pack first (name order); none when there is no folder."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [folder / n for n in sorted(names) if n.endswith(INDEX_SUFFIX) and not n.startswith(".")]


def read_index(path: Path) -> tuple[PackRef, list[Row]]:
    """A pack's description and rows. Raises `CorruptEntry` naming the file when the index is not
    whole (its rows' checksum does not match), and FileNotFoundError when it is gone."""
    data = path.read_bytes()
    end = data.find(b"\n")
    try:
        head = json.loads(data[:end]) if end > 0 else None
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("schema") != PACK_SCHEMA:
        raise CorruptEntry(f"{path}: not a pack index of schema {PACK_SCHEMA} (damaged, or written by another agi_core); "
                           "its entries are not used; `agi cache gc` removes it")
    body = data[end + 1:]
    if sha256_hex(body) != head.get("rows_sha256"):
        raise CorruptEntry(f"{path}: the index is cut short or altered (its rows' checksum does not match); its entries are "
                           "not used; `agi cache gc` removes it")
    rows = json.loads(body)
    name = path.name[: -len(INDEX_SUFFIX)]
    return PackRef(path.parent, name, head.get("common") or {}, int(head.get("pack_size", 0))), rows


def read_bodies(ref: PackRef, rows: Iterable[Row]) -> Iterator[tuple[Row, bytes | None, str | None]]:
    """Each row's checked body, or the reason it cannot be trusted; the pack is read once.
    Raises FileNotFoundError when the pack and its index are both gone (a gc rewrote it meanwhile)."""
    try:
        with open(ref.pack, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        if ref.index.exists():
            for row in rows:
                yield row, None, f"{ref.pack}: the pack is missing while its index is there; `agi cache gc` removes the index"
            return
        raise
    view = memoryview(data)
    for row in rows:
        where = f"{ref.pack}#{row[KEY][:16]}…"
        offset, size = row[OFFSET], row[SIZE]
        if offset + size > len(data):
            yield row, None, f"{where}: the pack is cut short ({len(data)} bytes, the entry ends at {offset + size})"
            continue
        body = view[offset: offset + size]
        try:
            check_body(where, {"size": size, "sha256": row[SHA256]}, body)
        except CorruptEntry as exc:
            yield row, None, str(exc)
            continue
        yield row, bytes(body), None


def rewrite_without(ref: PackRef, rows: list[Row], drop: set[str]) -> list[Row]:
    """Replace the pack ``ref`` by one without the rows whose key is in ``drop`` (and without rows
    that no longer check); returns the rows dropped. The new pack keeps the old one's time prefix
    and its index the old one's mtime (its last use), so neither order nor gc's view changes."""
    try:
        used = ref.index.stat().st_mtime
    except FileNotFoundError:
        return []  # another gc or run rewrote it meanwhile
    writer = PackWriter(ref.folder, prefix=ref.prefix, max_bytes=1 << 62, max_entries=1 << 62)
    dropped: list[Row] = []
    try:
        checked = list(read_bodies(ref, rows))
    except FileNotFoundError:
        return []
    for row, body, problem in checked:
        if row[KEY] in drop or body is None:
            dropped.append(row)
            continue
        writer.add(row[KEY], body, partition=row[PARTITION], created=row[CREATED], replace=row[REPLACE], outputs=row[OUTPUTS],
                   files=row[FILES], tag=row[TAG], sha256=row[SHA256], **{**ref.common, **(row[EXTRA] or {})})
    if not dropped:
        return []
    new = writer.flush()
    if new is not None:
        os.utime(new.with_suffix(INDEX_SUFFIX), (used, used))
    ref.index.unlink(missing_ok=True)  # the index first: no reader sees an index without its pack
    ref.pack.unlink(missing_ok=True)
    return dropped
