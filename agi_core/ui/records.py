"""A run record's partitions as the record page shows them: filtered by status, found by id,
sorted, one page at a time; records that ended are kept read (by path and mtime), so filtering a
100,000-partition record does not parse its manifest again on every keystroke."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..provenance import PartitionRecord, RunRecord, RunStore

__all__ = ["PAGE", "SORTS", "PartitionPage", "RecordCache", "partition_page"]

PAGE = 300  # partitions per page
#: sort key name → (label, key function)
SORTS: dict[str, tuple[str, Any]] = {
    "plan": ("plan order", None),
    "id": ("id", lambda p: p.id),
    "duration": ("duration", lambda p: p.duration_s),
    "start": ("start time", lambda p: p.start),
    "slot": ("slot", lambda p: (p.slot_that_ran or "", p.id)),
    "status": ("status", lambda p: (p.status, p.id)),
}


class RecordCache:
    """The last few records read, by manifest path and mtime (a running record is read each time)."""

    def __init__(self, size: int = 4) -> None:
        self._items: OrderedDict[str, tuple[float, RunRecord]] = OrderedDict()
        self._size = size
        self._heads: dict[str, tuple[float, RunRecord]] = {}  # manifest → (mtime, the record without its partitions)

    def list(self, store: RunStore, app: str | None = None) -> list[RunRecord]:
        """`RunStore.list` for the RUNS table: a record that ended is read once (then its head,
        without partitions, is kept); running ones are read each time (their log grows)."""
        records = []
        for manifest in store.manifests(app):
            try:
                stamp = manifest.stat().st_mtime
            except OSError:
                continue
            hit = self._heads.get(str(manifest)) or self._items.get(str(manifest))
            if hit is not None and hit[0] == stamp:
                records.append(hit[1])
                continue
            found = _read_listed(store, manifest)
            if found.status not in ("running", "unreadable"):
                self._heads[str(manifest)] = (stamp, found if not found.partitions else found.model_copy(update={"partitions": []}))
            records.append(found)
        return sorted(records, key=lambda r: (r.started, r.run_id), reverse=True)

    def find(self, store: RunStore, app: str, run_id: str) -> RunRecord:
        manifest = store.run_dir(app, run_id) / "manifest.json"
        try:
            stamp = manifest.stat().st_mtime
        except OSError:
            return store.find(str(store.run_dir(app, run_id)))
        key = str(manifest)
        hit = self._items.get(key)
        if hit is not None and hit[0] == stamp:
            self._items.move_to_end(key)
            return hit[1]
        record = store.find(str(store.run_dir(app, run_id)))
        if record.status != "running":
            self._items[key] = (stamp, record)
            self._heads[key] = (stamp, record.model_copy(update={"partitions": []}))
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return record


def _read_listed(store: RunStore, manifest: Path) -> RunRecord:
    """One record as `RunStore.list` reads it: an unreadable one is listed with that status."""
    from ..base.errors import AgiError
    from ..provenance import AppRecord
    from ..provenance.store import read_record_head

    try:
        return read_record_head(manifest, store.access)  # a record that ended: its head only, no partitions
    except AgiError as exc:
        return RunRecord(run_id=manifest.parent.name, status="unreadable", app=AppRecord(name=manifest.parent.parent.name),
                         error=exc.message, path=str(manifest))


@dataclass
class PartitionPage:
    rows: list[PartitionRecord]
    matched: int
    start: int
    counts: dict[str, int]

    @property
    def following(self) -> int | None:
        return self.start + PAGE if self.start + PAGE < self.matched else None


def partition_page(record: RunRecord, status: str = "", q: str = "", sort: str = "plan", desc: bool = False,
                   start: int = 0) -> PartitionPage:
    """The partitions of ``record`` with ``status`` (any when empty) whose id contains ``q`` (an
    exact id first), sorted, from ``start``."""
    parts = record.partitions
    counts: dict[str, int] = {}
    for part in parts:
        counts[part.status] = counts.get(part.status, 0) + 1
    chosen = [p for p in parts if (not status or p.status == status) and (not q or q in p.id)]
    key = SORTS.get(sort, SORTS["plan"])[1]
    if key is not None:
        chosen.sort(key=key, reverse=desc)
    elif desc:
        chosen.reverse()
    if q:
        chosen.sort(key=lambda p: p.id != q)  # the exact id first (a stable sort keeps the rest's order)
    start = max(0, start)
    return PartitionPage(chosen[start:start + PAGE], len(chosen), start, counts)


def run_dir_of(record: RunRecord, store: RunStore) -> Path:
    return Path(record.path).parent if record.path else store.run_dir(record.app.name, record.run_id)
