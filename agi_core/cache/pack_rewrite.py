"""Rewriting packs for `agi cache gc`: merging consecutive small packs into one, and writing a pack
again without some entries. Only renames and unlinks, never an edit in place (`agi_core.cache.packs`).
"""

from __future__ import annotations

import os

from .pack_format import INDEX_SUFFIX, PackIndex
from .pack_reader import read_bodies
from .pack_writer import PackWriter

__all__ = ["merge", "rewrite_without"]


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
