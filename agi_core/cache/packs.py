"""Pack files: many cache entries written by one worker in one go, found through one small index.

One file per entry cost a file creation per partition (0.1-1.6 ms on a busy disk), which made
100,000 tiny partitions several times slower with the cache than without. A worker now buffers
the entries it computes and writes them together::

    packs/<name>.pack    the pickled results, back to back
    packs/<name>.index   line 1: JSON header (schema, pack size, count, the fields all entries
                         share, SHA-256 of line 2); line 2: the entries, column by column
                         (key, size, sha256, partition, tag, created in ms after created_base;
                         sparse: replace, outputs, files, extra), as one JSON object (`PackIndex`)

``<name>`` is ``<16 hex digits of time_ns>-<pid>-<random>-<sequence>``: unique per writer without
any lock, and sortable by when it was written. The pack is written under a ``.tmp-`` name and
renamed into place, then the index the same way: an index exists only once its pack is whole, and
a reader lists indexes only. A writer killed half-way leaves at most a ``.tmp-`` file (named for
its pid and host: `tempnames`) or a pack without an index, which no reader sees and `agi cache gc`
removes. Nothing is ever rewritten in
place: dropping entries (`rewrite_without`) writes a new pack of the others, renames it in, then
unlinks the old index and pack, so a reader sees the old pack, the new one, or both (same key,
same content). Only renames and unlinks are used: safe on NFS, where locks are not.

Each entry has its authentication tag (column ``tag``: a MAC under its owner's key, `auth`),
which `CacheStore` checks before it unpickles anything; this module only keeps it. A worker's
pack also has a ``seal`` in its index header (`auth.CacheKey.seal` of the columns' SHA-256),
which authenticates all its entries in one check; packs that copy entries (gc's merge and
rewrite, bundle imports) have none, so their entries are checked tag by tag.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> writer = PackWriter(folder)
>>> location = writer.add("ab" * 32, b"result bytes", partition="p1", run_id="r1")
>>> pack = writer.flush()
>>> index = read_index(pack.with_suffix(INDEX_SUFFIX))
>>> index.header(0)["partition"], index.header(0)["run_id"], location == str(pack)
('p1', 'r1', True)
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from .entries import ENTRY_SCHEMA, CorruptEntry, sha256_hex
from .tempnames import temp_name

__all__ = ["INDEX_SUFFIX", "PACK_SCHEMA", "PACK_SUFFIX", "PACKS", "PackIndex", "PackWriter", "list_indexes", "merge",
           "read_bodies", "read_index", "rewrite_without"]

PACK_SCHEMA = "agi.cache.pack.v1"
PACKS = "packs"  # the folder of packs, in an app's cache folder
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".index"
#: a writer flushes by itself past these (a pack stays small enough to read whole)
MAX_PACK_BYTES = 64 << 20
MAX_PACK_ENTRIES = 20_000


@dataclass(eq=False)
class PackIndex:
    """One pack as its index describes it: where it is, the fields its entries share, and its
    entries by position, column by column (a column parses 4x faster than a row per entry).
    Sparse columns (outputs, files, extra, replace) hold only the positions that have one."""

    folder: Path
    name: str
    common: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    created: list[float] = field(default_factory=list)
    replaced: set[int] = field(default_factory=set)  # stored by --refresh: wins over older copies
    outputs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[int, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)  # each entry's authentication tag (`auth`); "" when it has none
    extra: dict[int, dict[str, Any]] = field(default_factory=dict)
    offsets: list[int] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)  # key -> its position (the last, if a key is there twice)
    columns_sha256: str = ""  # the SHA-256 of the index's second line (checked when it is read)
    #: the writer's tag of the whole index (`auth.CacheKey.seal` of ``columns_sha256``): when it checks,
    #: every entry's key, checksum and outputs are authenticated at once; "" when the pack has none
    seal: str = ""

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

    def header(self, i: int) -> dict[str, Any]:
        """Entry ``i``'s header, as a single-file entry would have it (plus ``pack`` and ``offset``)."""
        header = {"schema": ENTRY_SCHEMA, "key": self.keys[i], "partition": self.partitions[i], "created": self.created[i],
                  "size": self.sizes[i], "sha256": self.sha256[i], "outputs": self.outputs.get(i) or [], "files": None,
                  **self.common, "tag": None, "replaced": False, "pack": self.name, "offset": self.offsets[i]}
        if i in self.files:
            header["files"] = self.files[i]
        if self.tags[i]:
            header["tag"] = self.tags[i]
        if i in self.replaced:
            header["replaced"] = True
        if i in self.extra:
            header.update(self.extra[i])
        return header

    def value(self, i: int, name: str, default: Any = None) -> Any:
        """One field of entry ``i``'s header without building the header (`header`): its own
        value where it differs from the pack's common fields, else the common one."""
        own = self.extra.get(i)
        if own is not None and name in own:
            return own[name]
        return self.common.get(name, default)

    def columns(self) -> dict[str, Any]:
        """The index's second line. ``created`` goes as milliseconds after the first entry's time:
        integers encode several times faster than floats, which made half of a flush's cost."""
        base = min(self.created, default=0.0)
        return {"key": self.keys, "size": self.sizes, "sha256": self.sha256, "partition": self.partitions, "tag": self.tags,
                "created_base": base,
                "created_ms": [round((c - base) * 1000) for c in self.created], "replace": sorted(self.replaced),
                "outputs": self.outputs, "files": self.files, "extra": self.extra}


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
        if meta is not self._meta and meta != index.common:
            extra = {k: v for k, v in meta.items() if index.common.get(k, _MISSING) != v}
            extra.update({k: None for k in index.common if k not in meta})
            index.extra[len(index.keys)] = extra
        if replace:
            index.replaced.add(len(index.keys))
        if outputs:
            index.outputs[len(index.keys)] = outputs
        if files:
            index.files[len(index.keys)] = files
        index.tags.append(tag or "")
        index.keys.append(key)
        index.sizes.append(len(body))
        index.sha256.append(sha256 or sha256_hex(body))
        index.partitions.append(partition)
        index.created.append(time.time() if created is None else created)
        self._bodies.append(body)
        self._offset += len(body)
        return self._where

    def flush(self) -> Path | None:
        """Write the buffered entries: the pack, then its index, each under a temporary name
        renamed into place. Returns the pack's path (None when nothing was buffered). On failure
        nothing is left behind and the buffered entries are dropped (the caller reports them)."""
        index, bodies = self._index, self._bodies
        if index is None or not bodies:
            return None
        self._reset()
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


_MISSING = object()


def list_indexes(folder: Path) -> list[Path]:
    """The indexes in ``folder``, oldest pack first (name order); none when there is no folder."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [folder / n for n in sorted(names) if n.endswith(INDEX_SUFFIX) and not n.startswith(".")]


def read_index(path: Path) -> PackIndex:
    """A pack's index. Raises `CorruptEntry` naming the file when it is not whole (its checksum
    does not match) or not ours, and FileNotFoundError when it is gone."""
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
    if sha256_hex(body) != head.get("columns_sha256"):
        raise CorruptEntry(f"{path}: the index is cut short or altered (its checksum does not match); its entries are "
                           "not used; `agi cache gc` removes it")
    try:
        cols = json.loads(body)
        base = cols["created_base"]
        created = [base + ms / 1000 for ms in cols["created_ms"]]
        index = PackIndex(path.parent, path.name[: -len(INDEX_SUFFIX)], head.get("common") or {}, cols["key"], cols["size"],
                          cols["sha256"], cols["partition"], created, set(cols["replace"]),
                          *({int(i): v for i, v in cols[name].items()} for name in ("outputs", "files")),
                          _tags(cols.get("tag"), len(cols["key"])), {int(i): v for i, v in cols["extra"].items()},
                          columns_sha256=str(head["columns_sha256"]), seal=str(head.get("seal") or ""))
        if not len(index.keys) == len(index.sizes) == len(index.sha256) == len(index.partitions) == len(index.created) \
                == len(index.tags):
            raise ValueError("columns of different lengths")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise CorruptEntry(f"{path}: the index's entries do not read ({type(exc).__name__}: {exc}); its entries are not used; "
                           "`agi cache gc` removes it") from None
    index.offsets = [0, *itertools.accumulate(index.sizes)][:-1] if index.sizes else []
    index.position = dict(zip(index.keys, range(len(index.keys))))
    return index


def _tags(column: Any, count: int) -> list[str]:
    """The tag column: one string per entry (an index written before tags, sparse or absent: "" where none)."""
    if isinstance(column, list):
        return [str(t or "") for t in column]
    tags = [""] * count
    for i, tag in (column or {}).items():
        tags[int(i)] = str(tag or "")
    return tags


def read_bodies(index: PackIndex, positions: Iterable[int]) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Each entry's checked body, or the reason it cannot be trusted; the pack is read once.
    Raises FileNotFoundError when the pack and its index are both gone (a gc rewrote it meanwhile)."""
    try:
        with open(index.pack, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        if index.index.exists():
            for i in positions:
                yield i, None, f"{index.pack}: the pack is missing while its index is there; `agi cache gc` removes the index"
            return
        raise
    view = memoryview(data)
    offsets, sizes, sums = index.offsets, index.sizes, index.sha256
    for i in positions:
        offset, size = offsets[i], sizes[i]
        if offset + size > len(data):
            yield i, None, (f"{index.pack}#{index.keys[i][:16]}…: the pack is cut short ({len(data)} bytes, the entry ends "
                            f"at {offset + size})")
            continue
        body = view[offset: offset + size]
        if sha256_hex(body) != sums[i]:
            yield i, None, f"{index.pack}#{index.keys[i][:16]}…: the result's checksum does not match its index"
            continue
        yield i, bytes(body), None


def merge(indexes: list[PackIndex]) -> int:
    """Replace consecutive packs (in name order: nothing written between them) by one, so that a
    cache of many small packs (a mode-0 run writes one per partition of 5 ms or more) is not one file read per
    entry. A key in several of them keeps the copy a reader would take (the first written, or the
    last ``--refresh`` one); the merged pack takes the first one's time prefix, so it sorts where
    they did, and the newest last use of theirs. Returns how many entries it holds (0: nothing
    written, e.g. they were rewritten meanwhile)."""
    chosen: dict[str, tuple[PackIndex, int]] = {}
    for index in indexes:
        for i, key in enumerate(index.keys):
            if key not in chosen or i in index.replaced:
                chosen[key] = (index, i)
    bodies: dict[tuple[str, int], bytes] = {}
    used = 0.0
    try:
        for index in indexes:
            used = max(used, index.index.stat().st_mtime)
            wanted = [i for key, (owner, i) in chosen.items() if owner is index]
            for i, body, _ in read_bodies(index, wanted):
                if body is not None:  # an entry that does not check is left out (never served anyway)
                    bodies[(index.name, i)] = body
    except FileNotFoundError:
        return 0  # another gc merged or rewrote them meanwhile
    writer = PackWriter(indexes[0].folder, prefix=indexes[0].prefix)
    for key, (index, i) in chosen.items():
        body = bodies.get((index.name, i))
        if body is not None:
            writer.add(key, body, partition=index.partitions[i], created=index.created[i], replace=i in index.replaced,
                       outputs=index.outputs.get(i), files=index.files.get(i), tag=index.tags[i], sha256=index.sha256[i],
                       **{**index.common, **index.extra.get(i, {})})
    writer.flush()
    for pack in writer.written:
        os.utime(pack.with_suffix(INDEX_SUFFIX), (used, used))
    for index in indexes:
        index.index.unlink(missing_ok=True)  # indexes first: no reader sees an index without its pack
    for index in indexes:
        index.pack.unlink(missing_ok=True)
    return len(bodies)


def rewrite_without(index: PackIndex, drop: set[str]) -> list[int]:
    """Replace the pack of ``index`` by one without the entries whose key is in ``drop`` (and
    without entries that no longer check); returns the positions dropped. The new pack keeps the
    old one's time prefix, and its index the old one's mtime (its last use), so neither the order
    of packs nor gc's view of them changes."""
    try:
        used = index.index.stat().st_mtime
        checked = list(read_bodies(index, range(len(index.keys))))
    except FileNotFoundError:
        return []  # another gc or run rewrote it meanwhile
    writer = PackWriter(index.folder, prefix=index.prefix, max_bytes=1 << 62, max_entries=1 << 62)
    dropped: list[int] = []
    for i, body, _ in checked:
        if index.keys[i] in drop or body is None:
            dropped.append(i)
            continue
        writer.add(index.keys[i], body, partition=index.partitions[i], created=index.created[i], replace=i in index.replaced,
                   outputs=index.outputs.get(i), files=index.files.get(i), tag=index.tags[i], sha256=index.sha256[i],
                   **{**index.common, **index.extra.get(i, {})})
    if not dropped:
        return []
    new = writer.flush()
    if new is not None:
        os.utime(new.with_suffix(INDEX_SUFFIX), (used, used))
    index.index.unlink(missing_ok=True)  # the index first: no reader sees an index without its pack
    index.pack.unlink(missing_ok=True)
    return dropped
