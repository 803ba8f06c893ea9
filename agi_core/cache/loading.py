"""Reading entries out of the cache, checked: the tag under the owner's key first (`auth`), then
size and SHA-256, before anything is unpickled; each pack read once for all the keys it holds.

Separate from `store` (`CacheStore`, whose `load_many` and `read_raw` hand on to these) because
this is the read path a run's hits take, entry by entry in a pack's loop: plain generators over a
view and its keys, with no per-entry call beyond the checks themselves.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import packs
from .auth import untrusted
from .entries import CorruptEntry, Entry, check_body, decode_single, unloadable
from .views import CacheView

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["PlainPack", "load_grouped", "load_many", "read_raw"]


def load_many(store: CacheStore, view: CacheView, keys: Iterable[str], *, touch: bool = True
              ) -> Iterator[tuple[str, Entry | None, str | None]]:
    """``(key, entry, None)`` for each of ``keys`` that loads and checks, ``(key, None, why)``
    for one that cannot be trusted, ``(key, None, None)`` for one gone since ``view`` was
    taken; keys ``view`` does not have are left out. Each pack is read once and, with
    ``touch``, marked used once."""
    for source, rows in _read(store, view, keys, touch):
        if isinstance(source, packs.PackIndex):
            yield from _pack_entries(source, rows)
        else:
            yield _single_entry(rows)


@dataclass(frozen=True)
class PlainPack:
    """What every entry of a pack shares when none has output files or fields of its own (the
    usual pack): a cache hit from it needs nothing more of an entry than its key, checksum and result."""

    location: str  # the pack's path, as a run's record names it
    kernel: str
    undeclared: tuple[str, ...]  # the files its entries' work() read without declaring them


def load_grouped(store: CacheStore, view: CacheView, keys: Iterable[str], *, touch: bool = True
                 ) -> Iterator[tuple[PlainPack | None, list[tuple[str, str, Any]], list[tuple[str, Entry | None, str | None]]]]:
    """`load_many`, a pack at a time, for a run that loads 100,000 hits: ``(plain, loaded, rest)``
    where, for a `PlainPack`, ``loaded`` holds its entries that load as ``(key, sha256, result)``
    (no `Entry` each: a third of a re-run's time was making them) and ``rest`` the others as
    `load_many` gives them; for any other pack or a single-file entry, ``plain`` is None,
    ``loaded`` empty and ``rest`` everything."""
    loads = pickle.loads
    for source, rows in _read(store, view, keys, touch):
        if not isinstance(source, packs.PackIndex):
            yield None, [], [_single_entry(rows)]
        elif source.extra or source.outputs:
            yield None, [], list(_pack_entries(source, rows))
        else:
            where, keys_of, sums = str(source.pack), source.keys, source.sha256
            loaded: list[tuple[str, str, Any]] = []
            rest: list[tuple[str, Entry | None, str | None]] = []
            for i, body, problem in rows:
                if body is None:
                    rest.append((keys_of[i], None, problem))
                    continue
                try:
                    loaded.append((keys_of[i], sums[i], loads(body)))
                except Exception as exc:  # noqa: BLE001 - any unpickling failure makes the entry unusable here
                    rest.append((keys_of[i], None, unloadable(where, keys_of[i], exc)))
            yield PlainPack(where, str(source.common.get("kernel", "")), tuple(source.common.get("undeclared") or ())), loaded, rest


def _pack_entries(source: packs.PackIndex, rows: list[tuple[int, bytes | None, str | None]]
                  ) -> Iterator[tuple[str, Entry | None, str | None]]:
    """The entries of one pack's checked rows, as `load_many` gives them."""
    loads = pickle.loads
    # what a hit needs, from the pack's columns (`Entry`); the same for all its entries
    # when none differs from the pack's common fields (the usual case)
    pack, where, keys_of, sums, outputs, header = source.pack, str(source.pack), source.keys, source.sha256, \
        source.outputs, source.header
    kernel = None if source.extra else str(source.common.get("kernel", ""))
    undeclared = None if source.extra else tuple(source.common.get("undeclared") or ())
    for i, body, problem in rows:
        key = keys_of[i]
        if body is None:
            yield key, None, problem
            continue
        try:
            result = loads(body)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure makes the entry unusable here
            yield key, None, unloadable(where, key, exc)
            continue
        yield key, Entry(pack, partial(header, i), result, where, sums[i],
                         str(source.value(i, "kernel", "")) if kernel is None else kernel,
                         outputs.get(i) or [],
                         tuple(source.value(i, "undeclared") or ()) if undeclared is None else undeclared), None


def _single_entry(row: tuple[str, bytes | None, str, str | None, dict[str, Any]]) -> tuple[str, Entry | None, str | None]:
    """A single-file entry's checked row, as `load_many` gives it."""
    key, body, where, problem, single = row
    if body is None:
        return key, None, problem
    try:
        result = pickle.loads(body)
    except Exception as exc:  # noqa: BLE001 - as above
        return key, None, unloadable(where, key, exc)
    return key, Entry(Path(where), partial(dict, single), result, where, str(single.get("sha256", "")),
                      str(single.get("kernel", "")), list(single.get("outputs") or ()),
                      tuple(single.get("undeclared") or ())), None


def read_raw(store: CacheStore, view: CacheView, keys: Iterable[str], *, touch: bool = False
             ) -> Iterator[tuple[str, dict[str, Any], bytes | None, str, str | None]]:
    """``(key, header, body, location, problem)``, bodies checked but not unpickled (bundles
    carry them as they are). ``body`` is None with a problem, or when the entry is gone."""
    for source, rows in _read(store, view, keys, touch):
        if isinstance(source, packs.PackIndex):
            where = str(source.pack)
            for i, body, problem in rows:
                yield source.keys[i], source.header(i), body, where, problem
        else:
            key, body, where, problem, header = rows
            yield key, header, body, where, problem


def _read(store: CacheStore, view: CacheView, keys: Iterable[str], touch: bool) -> Iterator[tuple[Any, Any]]:
    """The entries of ``keys``, checked, a pack at a time: ``(index, [(i, body, problem)])``
    for the entries of a pack (``i`` their positions in it), ``(None, (key, body, location,
    problem, header))`` for a single-file entry. ``body`` is None with a problem, or when
    the entry is gone."""
    by_pack: dict[str, tuple[packs.PackIndex, list[int]]] = {}
    for key in keys:
        place = view.places.get(key)
        if place is None:
            continue
        if isinstance(place, Path):
            yield None, _read_single(store, key, place, touch)
            continue
        by_pack.setdefault(place.name, (place, []))[1].append(place.position[key])
    check = store.key.check
    for index, positions in by_pack.values():
        keys_of, sums, tags, outputs = index.keys, index.sha256, index.tags, index.outputs
        where = str(index.pack)
        # A sealed index authenticates every entry's key, checksum and outputs in one MAC;
        # otherwise (packs gc merged, bundles imported, older caches) each tag is checked.
        sealed = store.key.check_seal(index.columns_sha256, index.seal)
        try:
            checked = list(packs.read_bodies(index, positions, sealed=sealed))
        except FileNotFoundError:
            yield index, [(i, None, None) for i in positions]
            continue
        if not sealed:
            checked = [(i, None, untrusted(where, keys_of[i]))  # checked before anything unpickles it
                       if body is not None and not check(keys_of[i], sums[i], outputs.get(i), tags[i]) else (i, body, problem)
                       for i, body, problem in checked]
        yield index, checked
        if touch:
            _touch(index.index)


def _read_single(store: CacheStore, key: str, path: Path, touch: bool
                 ) -> tuple[str, bytes | None, str, str | None, dict[str, Any]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return key, None, str(path), None, {}
    try:
        header, body = decode_single(path, data)
        if header.get("key") != key:
            raise CorruptEntry(f"{path}: the header is for key {str(header.get('key'))[:16]}…")
        check_body(str(path), header, body)
    except CorruptEntry as exc:
        return key, None, str(path), str(exc), {}
    if not store.key.check(key, str(header.get("sha256")), header.get("outputs"), header.get("tag")):
        return key, None, str(path), untrusted(str(path), key), header
    if touch:
        _touch(path)
    return key, body, str(path), None, header


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only share still serves hits
