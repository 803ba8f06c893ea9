"""What unfinished cache writes leave behind: temporary files and folders (`unfinished_writes`, which
`agi cache list` counts), and those old enough, or whose writer is gone, for `agi cache gc` to take
(`leftover_writes`, `interrupted_clears`; `GRACE_S` is how old). Nothing here removes anything.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.quantities import disk_usage
from .entries import CorruptEntry
from .packs import INDEX_SUFFIX, PACK_SCHEMA, PACK_SUFFIX, read_index
from .store import CacheStore, EntryInfo
from .tempnames import is_temp, writer_alive, writer_of

__all__ = ["GRACE_S", "Unfinished", "interrupted_clears", "leftover_writes", "newest_mtime", "unfinished_writes"]


#: how old a temporary file, an unnamed output folder, or the keys of a run without a readable
#: record must be before gc takes them for leftovers (a worker or a run may be writing them)
GRACE_S = 3600.0


def leftover_writes(store: CacheStore, infos: Sequence[EntryInfo], now: float) -> Iterable[tuple[Path, int]]:
    """What unfinished or superseded writes left, once older than `GRACE_S`: ``.tmp-*`` files and
    folders, ``<key>.files-*`` folders no entry names (a write that lost, a replaced entry's),
    packs without an index (a writer killed between its two renames) and indexes that cannot be
    read (damaged; an index of another pack schema is left alone)."""
    named = {(store.root / info.key[:2], str(info.header.get("files"))) for info in infos if info.header.get("files")}
    if not store.root.is_dir():
        return
    for folder in sorted(store.root.iterdir()):
        if not folder.is_dir():
            continue
        names = set(os.listdir(folder))
        for name in sorted(names):
            path = folder / name
            leftover = name.startswith(".tmp-") or (".files-" in name and (folder, name) not in named)
            if folder == store.packs_dir and not leftover:
                stem, _, suffix = name.rpartition(".")
                leftover = (suffix == PACK_SUFFIX[1:] and f"{stem}{INDEX_SUFFIX}" not in names) or \
                    (suffix == INDEX_SUFFIX[1:] and _damaged_index(path))
            if leftover and (now - newest_mtime(path) > GRACE_S or (is_temp(name) and writer_alive(name) is False)):
                yield path, disk_usage(path)


@dataclass(frozen=True)
class Unfinished:
    """A temporary file or folder of a cache write that has not finished: in progress, or left by
    a writer that was killed. ``alive``: whether its writer still runs (None: not known from here,
    e.g. it ran on another host)."""

    path: Path
    size: int
    modified: float
    writer: str  # "PID@HOST" from its name; "" when the name does not say
    alive: bool | None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "size": self.size, "modified": self.modified, "writer": self.writer, "alive": self.alive}


def unfinished_writes(store: CacheStore) -> list[Unfinished]:
    """The ``.tmp-*`` files and folders in ``store`` (its folder, ``packs/`` and the key folders):
    what `agi cache list` counts and `agi cache gc` removes once their writer is gone."""
    found: list[Unfinished] = []
    folders = [store.root]
    try:
        folders += sorted(p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if not is_temp(name):
                continue
            path = folder / name
            writer = writer_of(name)
            found.append(Unfinished(path, disk_usage(path), newest_mtime(path), f"{writer[0]}@{writer[1]}" if writer else "",
                                    writer_alive(name)))
    return found


def _damaged_index(path: Path) -> bool:
    """An index of our pack schema that does not read (not one a newer agi_core wrote)."""
    try:
        read_index(path)
        return False
    except FileNotFoundError:
        return False
    except (CorruptEntry, ValueError):
        try:
            with path.open("rb") as handle:
                schema = json.loads(handle.readline()).get("schema", "")
        except (OSError, ValueError, AttributeError):
            return True
        return not (isinstance(schema, str) and schema.startswith("agi.cache.pack.") and schema != PACK_SCHEMA)


def interrupted_clears(root: Path, now: float) -> Iterable[Path]:
    """What an interrupted `agi cache clear` left: ``.<app>.removing-*`` beside the apps' folders."""
    if root.is_dir():
        for path in sorted(root.glob(".*.removing-*")):
            if now - newest_mtime(path) > GRACE_S:
                yield path


def newest_mtime(path: Path) -> float:
    """The latest mtime of ``path`` and, for a folder, of everything in it."""
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return time.time()
    if path.is_dir() and not path.is_symlink():
        for base, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                try:
                    newest = max(newest, os.lstat(os.path.join(base, name)).st_mtime)
                except FileNotFoundError:
                    pass
    return newest
