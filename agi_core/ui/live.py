"""Following a run from its record: a run this server did not start (the CLI's, or one started
before `agi ui` restarted) is watched through its manifest and partition log, which its manager
flushes every couple of seconds; the events have the shape of a job's, so the page draws both alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..base.errors import AgiError
from ..provenance import RunRecord, RunStore, read_record
from ..provenance.writer import HEARTBEAT_FILE, LOG_FILE

__all__ = ["RecordFollower", "running_records"]


def _epoch(iso_time: str) -> float:
    try:
        return datetime.fromisoformat(iso_time).timestamp()
    except ValueError:
        return 0.0


@dataclass
class RecordFollower:
    """The events of one running record, given once each as the record grows."""

    started_sent: bool = False
    cluster_sent: bool = False
    seen: set[str] = field(default_factory=set)

    def events(self, record: RunRecord) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        t0 = _epoch(record.started)
        if not self.started_sent:
            self.started_sent = True
            out.append({"kind": "run_started", "run_id": record.run_id, "app": record.app.name, "mode": record.mode.value,
                        "partitions": record.totals.partitions, "slots": {s: 0 for s in record.plan.slots}})
        if record.cluster and not self.cluster_sent:  # with its dashboard, or none (the page says why)
            self.cluster_sent = True
            out.append({"kind": "cluster_ready", "scheduler": record.cluster.scheduler, "dashboard": record.cluster.dashboard})
        for part in record.partitions:
            if part.status in ("not run", "pending") or part.id in self.seen:
                continue
            self.seen.add(part.id)
            out.append({"kind": "partition_done", "id": part.id, "slot": part.slot_that_ran or "", "status": part.status,
                        "host": part.host, "worker": part.worker, "duration_s": part.duration_s, "error": part.error,
                        "t": round(max(0.0, part.end - t0), 4) if part.end else 0.0})
        return out


def end_summary(record: RunRecord) -> dict[str, Any]:
    """The ``end`` message of a followed record, shaped as a job's summary."""
    status = {"ok": "ok", "interrupted": "cancelled"}.get(record.status, "failed")
    return {"id": record.run_id, "kind": "run", "title": f"run {record.app.name}", "app": record.app.name, "status": status,
            "error": record.error, "result": {"run_id": record.run_id, "app": record.app.name}}


def running_records(store: RunStore, app: str | None = None) -> list[RunRecord]:
    """The share's records that still run, newest first. Only folders that still have a heartbeat
    or a partition log are read (a finished run's writer removes both): a page need not parse the
    manifests of finished 100,000-partition runs to find the one that runs."""
    found = []
    for manifest in store.manifests(app):
        folder = manifest.parent
        if not ((folder / HEARTBEAT_FILE).exists() or (folder / LOG_FILE).exists()):
            continue
        try:
            record = read_record(manifest, store.access)
        except AgiError:
            continue
        if record.status == "running":  # read_record judged the others (abandoned, failed)
            found.append(record)
    return sorted(found, key=lambda r: (r.started, r.run_id), reverse=True)
