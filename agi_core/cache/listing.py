"""What a cache holds, for people: every entry's header (`entries`), the keys matching a prefix,
one entry by a prefix of its key, and the header of the entry a run record names. Nothing is
checked here (`CacheStore.load` does that)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import packs
from .entries import SINGLE_SUFFIX, CorruptEntry, EntryInfo, decode_single
from .views import CacheView, read_view

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["entries", "find", "header_at", "matching"]

_SUFFIX = SINGLE_SUFFIX


def entries(store: CacheStore, view: CacheView | None = None) -> Iterator[EntryInfo]:
    """Every entry of this app, unchecked (headers only); unreadable indexes are skipped
    (`view().problems` names them)."""
    view = store.view() if view is None else view
    used: dict[Path, float] = {}
    for key in sorted(view.places):
        place = view.places[key]
        if isinstance(place, Path):
            try:
                stat = place.stat()
                with place.open("rb") as handle:
                    header, _ = decode_single(place, handle.readline())
            except (OSError, CorruptEntry):
                continue
            path, mtime, size = place, stat.st_mtime, int(header.get("size", 0))
        else:
            index, i = place, place.position[key]
            if index.name not in used:
                try:
                    used[index.name] = index.index.stat().st_mtime
                except FileNotFoundError:
                    used[index.name] = 0.0
            header = index.header(i)
            path, mtime, size = index.pack, used[index.name], index.sizes[i]
        size += sum(int(o.get("size", 0)) for o in header.get("outputs", ()))
        yield EntryInfo(key, path, size, mtime, header)


def matching(store: CacheStore, prefix: str) -> list[str]:
    """The keys that start with ``prefix``."""
    return sorted(key for key in store.view().places if key.startswith(prefix))


def find(store: CacheStore, prefix: str) -> EntryInfo:
    """The entry whose key starts with ``prefix`` (at least 4 characters)."""
    if len(prefix) < 4:
        raise KeyError(f"give at least 4 characters of the key, not {prefix!r}")
    view = store.view()
    matches = [key for key in view.places if key.startswith(prefix)]
    if len(matches) != 1:
        raise KeyError(f"{len(matches)} entries of {store.root} have a key starting with {prefix!r}")
    wanted = CacheView({matches[0]: view.places[matches[0]]})
    return next(entries(store, wanted))


def header_at(location: str, key: str) -> dict[str, Any] | None:
    """The header of the entry of ``key`` at ``location`` (a run record's: a pack, or a
    ``.entry`` file), if it is still there. A pack rewritten since (by gc, or a bundle import)
    has another name: the key is then looked up in the whole cache."""
    pack = location
    if location.endswith(_SUFFIX):
        key = ""
    try:
        if not key:
            with open(location, "rb") as handle:
                return decode_single(Path(location), handle.readline())[0]
        index = packs.read_index(Path(pack).with_suffix(packs.INDEX_SUFFIX))
    except FileNotFoundError:
        if not key:
            return None
        place = read_view(Path(pack).parent.parent, {key}).places.get(key)
        if place is None:
            return None
        return _header_of(place, key)
    except (OSError, CorruptEntry, ValueError):
        return None
    return index.header(index.keys.index(key)) if key in index.keys else None


def _header_of(place: packs.PackIndex | Path, key: str) -> dict[str, Any] | None:
    if not isinstance(place, Path):
        return place.header(place.position[key])
    try:
        with place.open("rb") as handle:
            return decode_single(place, handle.readline())[0]
    except (OSError, CorruptEntry):
        return None
