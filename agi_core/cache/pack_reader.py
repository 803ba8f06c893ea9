"""Reading packs: the indexes in a folder, one index checked and parsed, and the entries' bodies
checked against it (the format: `agi_core.cache.packs`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic_core import from_json

from .entries import CorruptEntry, sha256_hex
from .pack_format import INDEX_SUFFIX, PACK_SCHEMA, PackIndex

__all__ = ["list_indexes", "read_bodies", "read_index"]


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
        cols = from_json(body, cache_strings="keys")  # 1.5x json.loads: a re-run of 100,000 hits reads 100,000 rows
        base = cols["created_base"]
        created = [base + ms / 1000 for ms in cols["created_ms"]]
        index = PackIndex(path.parent, path.name[: -len(INDEX_SUFFIX)], head.get("common") or {}, cols["key"], cols["size"],
                          cols["sha256"], cols["partition"], created, set(cols["replace"]),
                          *({int(i): v for i, v in cols[name].items()} for name in ("outputs", "files")),
                          _tags(cols.get("tag"), len(cols["key"])), {int(i): v for i, v in cols["extra"].items()},
                          columns_sha256=str(head["columns_sha256"]), seal=str(head.get("seal") or ""),
                          pack_sha256=str(cols.get("pack_sha256") or ""))
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


def read_bodies(index: PackIndex, positions: Iterable[int], *, sealed: bool = False
                ) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Each entry's checked body, or the reason it cannot be trusted; the pack is read once.
    ``sealed``: the index's seal checked (its columns are the writer's), so when most entries are
    read, the pack's own checksum (`PackIndex.pack_sha256`) stands for each entry's: one check
    (where it does not match, each entry is checked, to find which).
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
    offsets, sizes, sums, sha256 = index.offsets, index.sizes, index.sha256, hashlib.sha256
    if sealed and index.pack_sha256:
        positions = positions if isinstance(positions, list) else list(positions)
        if 2 * len(positions) >= len(index.keys) and sha256(data).hexdigest() == index.pack_sha256:
            yield from [(i, data[offsets[i]: offsets[i] + sizes[i]], None) for i in positions]
            return
    for i in positions:
        offset, size = offsets[i], sizes[i]
        if offset + size > len(data):
            yield i, None, (f"{index.pack}#{index.keys[i][:16]}…: the pack is cut short ({len(data)} bytes, the entry ends "
                            f"at {offset + size})")
            continue
        body = view[offset: offset + size]
        if sha256(body).hexdigest() != sums[i]:  # `sha256_hex`, inline: once per hit of a re-run
            yield i, None, f"{index.pack}#{index.keys[i][:16]}…: the result's checksum does not match its index"
            continue
        yield i, bytes(body), None
