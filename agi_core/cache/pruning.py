"""Removing and rearranging cache entries: discard (every copy, or the copies a reader found
bad), clear, move single-file entries into a pack, merge small packs. Packs are never edited in
place: what stays is written as a new pack, renamed in, then the old one goes (`packs`).
`CacheStore`'s methods of the same names call these."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import packs
from .entries import CorruptEntry, decode_single

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["MANY_PACKS", "SMALL_PACK", "clear", "compact", "discard_copies", "discard_many", "migrate_singles"]

#: `compact`: packs under this many entries are merged, once there are more than `MANY_PACKS`
SMALL_PACK = 1000
MANY_PACKS = 64


def discard_many(store: CacheStore, keys: Iterable[str]) -> set[str]:
    """Remove every copy of these entries and their output files; returns the keys removed.
    Packs holding them are rewritten without them (never edited in place): one rewrite per
    pack, however many of its entries go."""
    drop = set(keys)
    removed: set[str] = set()
    for key in drop:
        if _remove_single(store.entry_path(key)):
            removed.add(key)
    for index in packs.list_indexes(store.packs_dir):
        try:
            pack = packs.read_index(index)
        except FileNotFoundError:
            continue
        except (CorruptEntry, ValueError):
            continue  # served by nobody; gc removes it
        if drop.isdisjoint(pack.keys):
            continue
        removed |= _rewrite_without(store, pack, drop)
    return removed


def discard_copies(store: CacheStore, copies: Iterable[tuple[str, packs.PackIndex | Path]]) -> set[str]:
    """Remove these copies of entries, each where a view found it (a key and its place), and
    no other copy of the key: a reader that found a copy corrupt must not take a newer copy
    written since (another run's ``--refresh``) with it. One rewrite per pack; a pack
    rewritten meanwhile is left alone (what checks still serves, what does not is never
    served). Returns the keys whose copy was removed."""
    removed: set[str] = set()
    by_pack: dict[Path, set[str]] = {}
    for key, place in copies:
        if isinstance(place, packs.PackIndex):
            by_pack.setdefault(place.index, set()).add(key)
        elif _remove_single(place):
            removed.add(key)
    for index_path, keys in by_pack.items():
        try:
            pack = packs.read_index(index_path)
        except (FileNotFoundError, CorruptEntry):
            continue
        removed |= _rewrite_without(store, pack, keys)
    return removed


def _rewrite_without(store: CacheStore, pack: packs.PackIndex, keys: set[str]) -> set[str]:
    """Rewrite ``pack`` without the entries of ``keys`` and remove their output folders;
    returns the keys whose entry was removed."""
    removed: set[str] = set()
    for i in packs.rewrite_without(pack, keys):
        key = pack.keys[i]
        if key in keys:
            removed.add(key)
        if i in pack.files:
            shutil.rmtree(store.root / key[:2] / pack.files[i], ignore_errors=True)
    return removed


def clear(store: CacheStore) -> int:
    """Remove every entry of this app; returns how many there were."""
    count = len(store.view()) if store.root.is_dir() else 0
    if store.root.is_dir():
        trash = store.root.with_name(f".{store.root.name}.removing-{secrets.token_hex(4)}")
        os.rename(store.root, trash)  # one step: no run sees half a cache
        shutil.rmtree(trash, ignore_errors=True)
    return count


def migrate_singles(store: CacheStore) -> int:
    """Move the single-file entries that check into one pack (their output folders stay where
    they are), then remove those files; returns how many moved. The pack is in place before any
    file goes, so a reader finds each entry throughout."""
    view = store.view()
    singles = [key for key, place in view.places.items() if isinstance(place, Path)]
    writer = packs.PackWriter(store.packs_dir, prefix="0" * 16)  # sorts before every pack written since
    moved: list[Path] = []
    used = 0.0
    for key, header, body, where, problem in store.read_raw(view, singles):
        if body is None or problem is not None:
            continue
        meta = {k: v for k, v in header.items()
                if k not in ("schema", "key", "partition", "created", "size", "sha256", "outputs", "files", "tag")}
        writer.add(key, body, partition=str(header.get("partition", "")), created=header.get("created"),
                   outputs=header.get("outputs") or [], files=header.get("files"), tag=header.get("tag"), **meta)
        moved.append(Path(where))
        try:
            used = max(used, Path(where).stat().st_mtime)
        except FileNotFoundError:
            pass
    writer.flush()
    for pack in writer.written:
        os.utime(pack.with_suffix(packs.INDEX_SUFFIX), (used, used))  # their last use, not the migration's
    for path in moved:
        path.unlink(missing_ok=True)
    return len(moved)


def compact(store: CacheStore, *, small: int = SMALL_PACK, most: int = MANY_PACKS) -> int:
    """Merge runs of consecutive small packs (under ``small`` entries) once there are more than
    ``most`` packs: every run reads every index, so many tiny packs would cost a file read per
    entry again. Returns how many packs were merged away."""
    indexes = []
    for path in packs.list_indexes(store.packs_dir):
        try:
            indexes.append(packs.read_index(path))
        except (FileNotFoundError, CorruptEntry):
            indexes.append(None)  # a damaged index breaks a run: what is on each side of it is not merged together
    if len(indexes) <= most:
        return 0
    merged, run = 0, []
    for index in [*indexes, None]:
        if index is not None and len(index.keys) < small and sum(len(i.keys) for i in run) + len(index.keys) <= small * 8 \
                and sum(sum(i.sizes) for i in (*run, index)) <= packs.MAX_PACK_BYTES:
            run.append(index)
            continue
        if len(run) > 1 and packs.merge(run):
            merged += len(run) - 1
        run = [index] if index is not None and len(index.keys) < small else []
    return merged


def _remove_single(path: Path) -> bool:
    """Remove a single-file entry and its output folder; False when it was gone already."""
    files = _single_files(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    if files:
        shutil.rmtree(path.parent / files, ignore_errors=True)
    return True


def _single_files(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return decode_single(path, handle.readline())[0].get("files")
    except (OSError, CorruptEntry):
        return None
