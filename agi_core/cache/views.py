"""`CacheView`: where each key of a cache is, as one listing saw it (every pack index read once)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import packs
from .entries import SINGLE_SUFFIX, CorruptEntry

__all__ = ["CacheView", "read_view"]

_SUFFIX = SINGLE_SUFFIX


@dataclass
class CacheView:
    """The entries of a cache as one listing saw them: key -> where it is.

    A place is the `PackIndex` of a pack entry (``index.position[key]`` says where in it), or the
    path of a single-file entry: one shared object per pack, so a view of 1,000,000 keys is one
    dict, filled at C speed.
    ``problems``: indexes that could not be read (their entries are not served)."""

    places: dict[str, packs.PackIndex | Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __contains__(self, key: str) -> bool:
        return key in self.places

    def __len__(self) -> int:
        return len(self.places)

    def keys(self) -> list[str]:
        return list(self.places)


def read_view(root: Path, keys: Iterable[str] | None = None) -> CacheView:
    """Read every index once (and list the single-file entries): where each key is, for
    ``keys`` only when given (so a run holds only what it may use)."""
    wanted = None if keys is None else (keys if isinstance(keys, (set, frozenset)) else set(keys))
    view = CacheView()
    places = view.places
    indexes = []
    for path in packs.list_indexes(root / packs.PACKS):
        try:
            indexes.append(packs.read_index(path))
        except FileNotFoundError:
            continue  # rewritten by a gc meanwhile: its entries are in the newer pack listed after it
        except CorruptEntry as exc:
            view.problems.append(str(exc))
    # The first written wins: newest first, each older one over it (set operations, no loop
    # per key); single-file entries are older than any pack; then entries stored by --refresh
    # win over every older copy, the newest last.
    for pack in reversed(indexes):
        places.update(dict.fromkeys(pack.position.keys() if wanted is None else pack.position.keys() & wanted, pack))
    for key, single in _singles(root, wanted):
        places[key] = single
    for pack in indexes:
        for i in sorted(pack.replaced):
            if wanted is None or pack.keys[i] in wanted:
                places[pack.keys[i]] = pack
    return view


def _singles(root: Path, wanted: Any) -> Iterator[tuple[str, Path]]:
    """Single-file entries (the older layout): one listing per prefix folder."""
    try:
        folders = [n for n in os.listdir(root) if len(n) == 2]
    except FileNotFoundError:
        return
    for name in sorted(folders):
        try:
            names = os.listdir(root / name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in sorted(names):
            if entry.endswith(_SUFFIX) and not entry.startswith("."):
                key = entry[: -len(_SUFFIX)]
                if wanted is None or key in wanted:
                    yield key, root / name / entry
