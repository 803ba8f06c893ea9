"""Keeping the cache tidy: `agi cache gc` (run folders: `agi_core.provenance.pruning`).

It first decides (a plan that ``--dry-run`` prints as it is), then acts; it neither prompts nor prints.

Safety, for ``gc``: an entry whose key a *running* run has (its record reads ``running``, not
``abandoned``; keys from its ``cache_keys.json``) is never removed, and neither are the keys of a
run folder whose record is not written yet or cannot be read while its keys file is younger than
`GRACE_S` (a run starting). An entry used again after gc looked at it (its mtime moved) is kept.
Temporary files (``.tmp-*``), packs without an index and output folders no entry names
(``<key>.files-*``) are removed only once they are older than `GRACE_S`: a worker storing entries
makes each of them for a moment. A temporary file whose name says its writer ran on this host
(`tempnames`) goes as soon as that process is gone: a killed writer's 300 MB need not wait an hour. Entries go by rewriting their packs without them
(`CacheStore.discard_many`); gc also moves single-file entries into a pack and merges small packs.

>>> entries = [_Item("toy", "a" * 64, 100, 10.0), _Item("toy", "b" * 64, 100, 20.0), _Item("toy", "c" * 64, 100, 30.0)]
>>> plan = plan_gc(entries, live={"a" * 64}, older_than=None, max_size=150, now=40.0)
>>> [(e.key[0], why) for e, why in plan.remove], [e.key[0] for e in plan.protected]
([('b', 'over size'), ('c', 'over size')], ['a'])
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AgiError
from ..quantities import disk_usage, format_age
from .entries import CorruptEntry
from .keys import KEYS_FILE, read_run_keys
from .packs import INDEX_SUFFIX, PACK_SCHEMA, PACK_SUFFIX, read_index
from .store import CacheStore, EntryInfo
from .tempnames import is_temp, writer_alive, writer_of

__all__ = [
    "GRACE_S",
    "GcPlan",
    "Unfinished",
    "apply_gc",
    "cache_apps",
    "check_entry",
    "collect_gc",
    "live_keys",
    "plan_gc",
    "unfinished_writes",
    "verify_store",
]

#: how old a temporary file, an unnamed output folder, or the keys of a run without a readable
#: record must be before gc takes them for leftovers (a worker or a run may be writing them)
GRACE_S = 3600.0

def cache_apps(share: Path) -> list[str]:
    """The apps that have a cache folder on ``share``."""
    root = Path(share) / "cache"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def check_entry(store: CacheStore, key: str) -> str | None:
    """None when the entry of ``key`` loads and its result and output files match their
    checksums; else why not. Read-only: it does not mark the entry used."""
    try:
        store.restore(store.load(key, touch=False), None)
    except FileNotFoundError:
        return "the entry is gone"
    except CorruptEntry as exc:
        return str(exc)
    return None


def verify_store(store: CacheStore) -> tuple[int, list[tuple[str, str]]]:
    """Check every entry of ``store`` as a run would (result and outputs), without using any:
    how many were checked, and ``(key or file, why)`` for each that cannot be trusted, indexes
    that cannot be read included. Each pack is read once."""
    view = store.view()
    problems: list[tuple[str, str]] = [("", problem) for problem in view.problems]
    for key, entry, problem in store.load_many(view, view.keys(), touch=False):
        if entry is None:
            problems.append((key, problem or "the entry is gone"))
            continue
        try:
            store.restore(entry, None)
        except CorruptEntry as exc:
            problems.append((key, str(exc)))
    return len(view), problems


# -- which keys running runs hold ------------------------------------------------------------------


def live_keys(share: Path, apps: Iterable[str] | None = None, *, now: float | None = None) -> dict[str, dict[str, str]]:
    """app -> {key: run id} for every run that may still use its keys: records that read
    ``running`` (a dead manager's read ``abandoned`` and hold nothing), and run folders whose
    record is missing or unreadable while their keys file is younger than `GRACE_S`."""
    from ..provenance import read_record

    now = time.time() if now is None else now
    runs = Path(share) / "runs"
    names = list(apps) if apps is not None else ([p.name for p in runs.iterdir() if p.is_dir()] if runs.is_dir() else [])
    held: dict[str, dict[str, str]] = {}
    for app in names:
        for keys_file in (runs / app).glob(f"*/{KEYS_FILE}"):
            run_dir = keys_file.parent
            manifest = run_dir / "manifest.json"
            status = _finished(manifest)
            if status is None:
                try:
                    status = read_record(manifest).status if manifest.exists() else None
                except AgiError:
                    status = None
            if status is None:  # being written, or unreadable: judged by the age of its keys
                try:
                    if now - keys_file.stat().st_mtime > GRACE_S:
                        continue
                except FileNotFoundError:
                    continue
            elif status != "running":
                continue
            keys = read_run_keys(run_dir)
            if keys is None:
                continue
            bucket = held.setdefault(app, {})
            for key in keys.keys.values():
                bucket.setdefault(key, run_dir.name)
    return held


def _finished(manifest: Path) -> str | None:
    """The status of a finished record, read from the head of its manifest (a finished record
    of 100,000 partitions is not parsed whole to learn it is not running); None otherwise."""
    try:
        with manifest.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    match = re.search(rb'\n "status": "([a-z ]+)"', head)  # a top-level key, as `RunRecord.dump_json` writes it
    status = match[1].decode() if match else None
    return status if status not in (None, "running") else None


# -- gc ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """An entry as gc weighs it: its app, key, size and last use."""

    app: str
    key: str
    size: int
    used: float
    partition: str = ""
    run_id: str = ""


@dataclass
class GcPlan:
    """What gc removes (with why: ``unused for …`` or ``over size``), what it keeps, and the leftovers."""

    remove: list[tuple[_Item, str]] = field(default_factory=list)
    protected: list[_Item] = field(default_factory=list)  # would have gone, but a running run holds its key
    kept: list[_Item] = field(default_factory=list)
    leftovers: list[tuple[str, Path, int]] = field(default_factory=list)  # (app, path, bytes): tmp files, orphans
    live_runs: dict[str, str] = field(default_factory=dict)  # key -> run id, for the protected ones
    max_size: int | None = None
    older_than: float | None = None
    migrated: int = 0  # single-file entries (the older layout) moved into a pack
    compacted: int = 0  # small packs merged into others

    @property
    def freed(self) -> int:
        return sum(item.size for item, _ in self.remove) + sum(size for _, _, size in self.leftovers)

    @property
    def kept_size(self) -> int:
        return sum(item.size for item in self.kept) + sum(item.size for item in self.protected)

    def to_json(self) -> dict[str, Any]:
        def entry(item: _Item, **more: Any) -> dict[str, Any]:
            return {"app": item.app, "key": item.key, "partition": item.partition, "size": item.size, "used": item.used,
                    "run_id": item.run_id, **more}

        return {"removed": [entry(item, reason=why) for item, why in self.remove],
                "protected": [entry(item, running_run=self.live_runs.get(item.key, "")) for item in self.protected],
                "kept": {"entries": len(self.kept) + len(self.protected), "size": self.kept_size},
                "leftovers": [{"app": app, "path": str(path), "size": size} for app, path, size in self.leftovers],
                "freed": self.freed, "max_size": self.max_size, "older_than_s": self.older_than,
                "migrated": self.migrated, "compacted": self.compacted}


def plan_gc(entries: Sequence[_Item], *, live: set[str], older_than: float | None, max_size: int | None,
            now: float) -> GcPlan:
    """Decide: first every entry unused for longer than ``older_than`` seconds, then the least
    recently used until the rest fits in ``max_size`` bytes; never a key in ``live``."""
    plan = GcPlan(max_size=max_size, older_than=older_than)
    remaining: list[_Item] = []
    for item in sorted(entries, key=lambda i: i.used):
        if older_than is not None and now - item.used > older_than:
            if item.key in live:
                plan.protected.append(item)
            else:
                plan.remove.append((item, f"unused for {format_age(now - item.used)}"))
        else:
            remaining.append(item)
    if max_size is not None:
        total = sum(i.size for i in remaining) + sum(i.size for i in plan.protected)
        for item in remaining:  # least recently used first
            if total <= max_size:
                plan.kept.append(item)
            elif item.key in live:
                plan.protected.append(item)
            else:
                plan.remove.append((item, "over size"))
                total -= item.size
    else:
        plan.kept = remaining
    return plan


def collect_gc(share: Path, apps: Sequence[str], *, older_than: float | None, max_size: int | None,
               now: float | None = None) -> GcPlan:
    """The gc plan of ``apps`` on ``share`` (``max_size`` bounds their entries together)."""
    now = time.time() if now is None else now
    held = live_keys(share, apps, now=now)
    items: list[_Item] = []
    leftovers: list[tuple[str, Path, int]] = []
    for app in apps:
        store = CacheStore.for_app(share, app)
        infos = list(store.entries())
        items += [_item(app, info) for info in infos]
        leftovers += [(app, path, size) for path, size in _leftovers(store, infos, now)]
    leftovers += [("", path, disk_usage(path)) for path in _removing(Path(share) / "cache", now)]
    live = {key for keys in held.values() for key in keys}
    plan = plan_gc(items, live=live, older_than=older_than, max_size=max_size, now=now)
    plan.leftovers = leftovers
    plan.live_runs = {key: run for keys in held.values() for key, run in keys.items()}
    return plan


def apply_gc(share: Path, plan: GcPlan) -> GcPlan:
    """Remove what ``plan`` says, checking each entry again just before: one a run has started
    to hold since, or has used since (its mtime moved), is kept. Returns what was done."""
    apps = sorted({item.app for item, _ in plan.remove})
    held = live_keys(share, apps)
    live = {key for keys in held.values() for key in keys}
    done = GcPlan(protected=list(plan.protected), kept=list(plan.kept), max_size=plan.max_size, older_than=plan.older_than,
                  live_runs={**plan.live_runs, **{k: r for keys in held.values() for k, r in keys.items()}})
    by_app: dict[str, list[tuple[_Item, str]]] = {}
    for item, why in plan.remove:
        by_app.setdefault(item.app, []).append((item, why))
    for app, items in by_app.items():
        store = CacheStore.for_app(share, app)
        now_used = {info.key: info.used for info in store.entries()}  # one listing per app, however many go
        going: dict[str, tuple[_Item, str]] = {}
        for item, why in items:
            used = now_used.get(item.key)
            if used is None:
                continue  # gone already (another gc, a corrupt entry a run discarded)
            if item.key in live:
                done.protected.append(item)
            elif used > item.used:
                done.kept.append(item)
            else:
                going[item.key] = (item, why)
        removed = store.discard_many(going)
        done.remove += [going[key] for key in going if key in removed]
    for app, path, size in plan.leftovers:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue
        done.leftovers.append((app, path, size))
    for app in sorted({item.app for item in done.kept + done.protected} | set(by_app)):
        store = CacheStore.for_app(share, app)
        done.migrated += store.migrate_singles()
        done.compacted += store.compact()
    return done


def _item(app: str, info: EntryInfo) -> _Item:
    return _Item(app, info.key, info.size, info.used, str(info.header.get("partition", "")), str(info.header.get("run_id", "")))


def _leftovers(store: CacheStore, infos: Sequence[EntryInfo], now: float) -> Iterable[tuple[Path, int]]:
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
            if leftover and (now - _newest(path) > GRACE_S or (is_temp(name) and writer_alive(name) is False)):
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
            found.append(Unfinished(path, disk_usage(path), _newest(path), f"{writer[0]}@{writer[1]}" if writer else "",
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


def _removing(root: Path, now: float) -> Iterable[Path]:
    """What an interrupted `agi cache clear` left: ``.<app>.removing-*`` beside the apps' folders."""
    if root.is_dir():
        for path in sorted(root.glob(".*.removing-*")):
            if now - _newest(path) > GRACE_S:
                yield path


def _newest(path: Path) -> float:
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
