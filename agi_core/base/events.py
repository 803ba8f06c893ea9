"""Typed events: how run, install and cluster say what is happening, without printing.

The core calls an `EventSink` (any callable taking an `Event`) with these small frozen records;
`cli/` renders them with rich, a web UI streams them to the browser. Every event is plain data
(`as_dict()` gives JSON), so a sink may forward it anywhere.

>>> seen = []
>>> emit = seen.append
>>> emit(Phase("planning", "mandelbrot"))
>>> seen[0].as_dict()
{'kind': 'phase', 'name': 'planning', 'detail': 'mandelbrot'}
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .event_base import Event, EventSink, ignore, wants_partitions

if TYPE_CHECKING:
    from .cluster_events import (
        ClusterReady,
        HostOutput,
        HostStep,
        PartitionsMoved,
        StepFinished,
        StepStarted,
        WorkerJoined,
        WorkerLeft,
        WorkersJoining,
    )

__all__ = [
    "ClusterReady",
    "Event",
    "EventSink",
    "HostOutput",
    "HostStep",
    "Notice",
    "PartitionDone",
    "PartitionsMoved",
    "Phase",
    "RunFinished",
    "RunStarted",
    "StepFinished",
    "StepStarted",
    "WorkerJoined",
    "WorkerLeft",
    "WorkersJoining",
    "ignore",
    "wants_partitions",
]


@dataclass(frozen=True)
class Phase(Event):
    """A step of a run or an install begins: planning, compiling, cluster, running, reducing, ..."""

    kind: ClassVar[str] = "phase"
    name: str
    detail: str = ""


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should read (a fallback taken, a warm cluster not usable, ...)."""

    kind: ClassVar[str] = "notice"
    text: str
    level: str = "info"  # "info" or "warning"


@dataclass(frozen=True)
class RunStarted(Event):
    """A run has its id and its plan: ``slots`` maps each used slot to its partition count."""

    kind: ClassVar[str] = "run_started"
    run_id: str
    app: str
    mode: int
    partitions: int
    slots: dict[str, int] = field(default_factory=dict)
    run_dir: str = ""







@dataclass(frozen=True)
class PartitionDone(Event):
    """One partition finished: the fields of its record (`provenance.PartitionRecord`, the same
    names) that a watcher needs. ``status`` is ok, failed, skipped or cached."""

    kind: ClassVar[str] = "partition_done"
    id: str
    slot: str
    status: str
    host: str = ""
    worker: str = ""
    duration_s: float = 0.0
    error: str | None = None
    cache: str = ""
    ran_slot: str = ""  # the slot whose worker ran it, when not ``slot`` (its task moved)
    job_id: str = ""  # the batch job or pod whose worker ran it

    @classmethod
    def of(cls, outcome: Any) -> PartitionDone:
        """The event of a finished partition's `executors.Outcome` (or anything with its record's fields)."""
        return cls(outcome.id, outcome.slot, outcome.status, outcome.host, outcome.worker, outcome.duration_s, outcome.error,
                   outcome.cache, outcome.ran_slot, outcome.job_id)


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    run_id: str
    status: str
    duration_s: float
    counts: dict[str, int] = field(default_factory=dict)


#: the events a run of this machine never emits, defined in `cluster_events` and loaded on first use
_ELSEWHERE = frozenset(("ClusterReady", "HostOutput", "HostStep", "PartitionsMoved", "StepFinished", "StepStarted",
                        "WorkerJoined", "WorkerLeft", "WorkersJoining"))


def __getattr__(name: str) -> Any:
    if name not in _ELSEWHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".cluster_events", __package__), name)
    globals()[name] = value  # once found, a plain attribute
    return value
