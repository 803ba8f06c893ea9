"""Keeping the share tidy: `agi cache gc` for cache entries, `agi runs prune` for run folders.

Both first decide (a plan that ``--dry-run`` prints as it is), then act; neither prompts nor prints.

Safety, for ``gc``: an entry whose key a *running* run has (its record reads ``running``, not
``abandoned``; keys from its ``cache_keys.json``) is never removed, and neither are the keys of a
run folder whose record is not written yet or cannot be read while its keys file is younger than
`GRACE_S` (a run starting). An entry used again after gc looked at it (its mtime moved) is kept.
Temporary files (``.tmp-*``) and output folders no entry names (``<key>.files-*``) are removed
only once they are older than `GRACE_S`: a worker storing an entry makes both for a moment.
For ``prune``: a run that is still running is never removed, nor a record that cannot be read
(it may be a newer agi_core's); cache entries are not touched (gc manages them).

>>> parse_duration("90m"), parse_duration("1.5h"), parse_duration("7d")
(5400.0, 5400.0, 604800.0)
>>> parse_size("500M"), parse_size("2G"), parse_size("1024")
(524288000, 2147483648, 1024)
>>> format_size(1536), format_size(3 * 1024**3)
('1.5 KiB', '3.0 GiB')
>>> entries = [_Item("toy", "a" * 64, 100, 10.0), _Item("toy", "b" * 64, 100, 20.0), _Item("toy", "c" * 64, 100, 30.0)]
>>> plan = plan_gc(entries, live={"a" * 64}, older_than=None, max_size=150, now=40.0)
>>> [(e.key[0], why) for e, why in plan.remove], [e.key[0] for e in plan.protected]
([('b', 'over size'), ('c', 'over size')], ['a'])
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import AgiError
from .keys import KEYS_FILE, RunKeys
from .store import CacheStore, EntryInfo

__all__ = [
    "GRACE_S",
    "GcPlan",
    "PrunePlan",
    "RunFolder",
    "apply_gc",
    "apply_prune",
    "cache_apps",
    "check_entry",
    "collect_gc",
    "format_size",
    "live_keys",
    "parse_duration",
    "parse_size",
    "plan_gc",
    "plan_prune",
    "read_run_keys",
]

#: how old a temporary file, an unnamed output folder, or the keys of a run without a readable
#: record must be before gc takes them for leftovers (a worker or a run may be writing them)
GRACE_S = 3600.0

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``30m``, ``12h``, ``7d``, ``2w`` (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit s, m, h, d or w (30m, 12h, 7d)")
    return float(match[1]) * _DURATION_UNITS[match[2] or "s"]


def parse_size(text: str) -> int:
    """Bytes in ``500M``, ``2G``, ``1.5T``, ``100k`` (powers of 1024; ``MB``, ``MiB`` mean the same)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a size: write a number and a unit K, M, G or T (500M, 2G)")
    return int(float(match[1]) * _SIZE_UNITS[match[2]])


def format_size(size: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def cache_apps(share: Path) -> list[str]:
    """The apps that have a cache folder on ``share``."""
    root = Path(share) / "cache"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def check_entry(store: CacheStore, key: str) -> str | None:
    """None when the entry of ``key`` loads and its result and output files match their
    checksums; else why not. Read-only: it does not mark the entry used."""
    import hashlib

    from .store import CorruptEntry

    try:
        entry = store.load(key, touch=False)
    except FileNotFoundError:
        return "the entry is gone"
    except CorruptEntry as exc:
        return str(exc)
    files = entry.header.get("files")
    for item in entry.header.get("outputs", ()):
        try:
            data = (entry.path.parent / str(files) / item["path"]).read_bytes()
        except OSError as exc:
            return f"output {item['path']} is unreadable ({exc.strerror})"
        if len(data) != item.get("size") or hashlib.sha256(data).hexdigest() != item.get("sha256"):
            return f"output {item['path']} does not match its checksum"
    return None


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
                "freed": self.freed, "max_size": self.max_size, "older_than_s": self.older_than}


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
                plan.remove.append((item, f"unused for {_age(now - item.used)}"))
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
    leftovers += [("", path, _du(path)) for path in _removing(Path(share) / "cache", now)]
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
    for item, why in plan.remove:
        store = CacheStore.for_app(share, item.app)
        path = store.entry_path(item.key)
        try:
            used = path.stat().st_mtime
        except FileNotFoundError:
            continue  # gone already (another gc, a corrupt entry a run discarded)
        if item.key in live:
            done.protected.append(item)
        elif used > item.used:
            done.kept.append(item)
        elif store.discard(item.key):
            done.remove.append((item, why))
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
    return done


def _item(app: str, info: EntryInfo) -> _Item:
    return _Item(app, info.key, info.size, info.used, str(info.header.get("partition", "")), str(info.header.get("run_id", "")))


def _leftovers(store: CacheStore, infos: Sequence[EntryInfo], now: float) -> Iterable[tuple[Path, int]]:
    """Temporary files and output folders older than `GRACE_S`: ``.tmp-*`` of an unfinished
    write, and ``<key>.files-*`` folders no entry names (a write that lost, or a replaced entry's)."""
    named = {(info.path.parent, str(info.header.get("files"))) for info in infos if info.header.get("files")}
    if not store.root.is_dir():
        return
    for folder in sorted(store.root.iterdir()):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            name = path.name
            leftover = name.startswith(".tmp-") or (".files-" in name and (folder, name) not in named)
            if leftover and now - _newest(path) > GRACE_S:
                yield path, _du(path)


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


def _du(path: Path) -> int:
    """Bytes in ``path`` (a file, or a folder's files)."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except FileNotFoundError:
        return 0
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}".replace(".0" + unit, unit)
    return f"{seconds:.0f}s"


# -- prune ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFolder:
    """A run folder as prune weighs it."""

    app: str
    run_id: str
    path: Path
    status: str
    started: str
    last: float  # when it ended (or last showed life); 0.0 when unknown
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "run_id": self.run_id, "path": str(self.path), "status": self.status, "started": self.started,
                "ended": self.last or None, "size": self.size}


@dataclass
class PrunePlan:
    remove: list[tuple[RunFolder, str]] = field(default_factory=list)
    running: list[RunFolder] = field(default_factory=list)  # would have gone, but still running
    unreadable: list[RunFolder] = field(default_factory=list)  # never removed: remove by hand
    kept: int = 0

    @property
    def freed(self) -> int:
        return sum(run.size for run, _ in self.remove)

    def to_json(self) -> dict[str, Any]:
        return {"removed": [run.to_json() | {"reason": why} for run, why in self.remove],
                "running": [run.to_json() for run in self.running],
                "unreadable": [run.to_json() for run in self.unreadable], "kept": self.kept, "freed": self.freed}


def plan_prune(share: Path, app: str | None = None, *, keep: int | None = None, older_than: float | None = None,
               now: float | None = None) -> PrunePlan:
    """Which run folders to remove: per app, all but the newest ``keep``, and/or those that ended
    more than ``older_than`` seconds ago (given both, a run goes only when both say so). A running
    run and an unreadable record are never chosen."""
    from ..provenance import RunStore

    if keep is None and older_than is None:
        raise AgiError("prune needs --keep N or --older-than DURATION", fix="e.g. agi runs prune --keep 20")
    now = time.time() if now is None else now
    store = RunStore(Path(share))
    by_app: dict[str, list[Any]] = {}
    for record in store.list(app):  # newest first
        by_app.setdefault(Path(str(record.path)).parent.parent.name, []).append(record)
    plan = PrunePlan()
    for name, records in sorted(by_app.items()):
        for rank, record in enumerate(records):
            run_dir = Path(str(record.path)).parent
            last = _last_sign(record, run_dir)
            reasons = []
            if keep is not None:
                if rank < keep:
                    plan.kept += 1
                    continue
                reasons.append(f"not among the newest {keep}")
            if older_than is not None:
                if not last or now - last <= older_than:
                    plan.kept += 1
                    continue
                reasons.append(f"ended {_age(now - last)} ago")
            folder = RunFolder(name, record.run_id, run_dir, record.status, record.started, last, _du(run_dir))
            if record.status == "running":
                plan.running.append(folder)
            elif record.status == "unreadable":
                plan.unreadable.append(folder)
            else:
                plan.remove.append((folder, "; ".join(reasons)))
    return plan


def apply_prune(plan: PrunePlan) -> PrunePlan:
    """Remove the run folders of ``plan`` (the manifest first, so listings drop the run at once);
    a run found running when its turn comes is kept. Returns what was removed."""
    from ..provenance import read_record

    done = PrunePlan(running=list(plan.running), unreadable=list(plan.unreadable), kept=plan.kept)
    for run, why in plan.remove:
        manifest = run.path / "manifest.json"
        try:
            if read_record(manifest).status == "running":
                done.running.append(run)
                continue
        except AgiError:
            if manifest.exists():
                done.unreadable.append(run)
                continue
        try:
            manifest.unlink()
        except FileNotFoundError:
            pass
        shutil.rmtree(run.path, ignore_errors=True)
        done.remove.append((run, why))
    return done


def _last_sign(record: Any, run_dir: Path) -> float:
    """When a run ended; for one that never recorded its end (abandoned), its last heartbeat,
    else the last write of its manifest."""
    for stamp in (record.ended, record.heartbeat):
        if stamp:
            try:
                return datetime.fromisoformat(stamp).timestamp()
            except ValueError:
                pass
    try:
        return (run_dir / "manifest.json").stat().st_mtime
    except OSError:
        return 0.0


def read_run_keys(run_dir: Path) -> RunKeys | None:
    """A run's keys (``<run>/cache_keys.json``), or None when it has none (a --no-cache run, or
    one that stopped before keying its plan) or they cannot be read."""
    try:
        return RunKeys.from_json((Path(run_dir) / KEYS_FILE).read_bytes())
    except (OSError, ValueError, KeyError):
        return None
