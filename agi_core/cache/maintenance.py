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

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.quantities import disk_usage, format_age
from .entries import CorruptEntry
from .leftovers import GRACE_S, Unfinished, interrupted_clears, leftover_writes, unfinished_writes
from .live_keys import live_keys
from .store import CacheStore, EntryInfo

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
        leftovers += [(app, path, size) for path, size in leftover_writes(store, infos, now)]
    leftovers += [("", path, disk_usage(path)) for path in interrupted_clears(Path(share) / "cache", now)]
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


