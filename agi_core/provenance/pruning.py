"""`agi runs prune`: removing old run folders, never one that is still running.

It first decides (a plan that ``--dry-run`` prints as it is), then acts; it neither prompts nor
prints. A record that cannot be read is never removed (it may be a newer agi_core's), and cache
entries are not touched (`agi cache gc` manages them).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..base.errors import AgiError
from ..base.quantities import disk_usage, format_age
from .store import RunStore, read_record

__all__ = ["PrunePlan", "RunFolder", "apply_prune", "plan_prune"]


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
                reasons.append(f"ended {format_age(now - last)} ago")
            folder = RunFolder(name, record.run_id, run_dir, record.status, record.started, last, disk_usage(run_dir))
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
