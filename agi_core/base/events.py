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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
class Event:
    """Base of every event; ``kind`` names it in JSON."""

    kind: ClassVar[str] = "event"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The sink used when nobody listens."""


def wants_partitions(sink: EventSink) -> bool:
    """Whether ``sink`` wants a `PartitionDone` per partition: not `ignore`, and not a sink whose
    ``partition_events`` attribute is False (e.g. the CLI without its progress bars). A run of
    100,000 partitions builds 100,000 of them: a third of a second when nobody reads them.

    >>> wants_partitions(print), wants_partitions(ignore)
    (True, False)
    """
    return sink is not ignore and getattr(sink, "partition_events", True)


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
class ClusterReady(Event):
    """The Dask cluster a run uses is up (or attached to)."""

    kind: ClassVar[str] = "cluster_ready"
    scheduler: str
    dashboard: str | None = None
    warm: bool = False
    note: str = ""


@dataclass(frozen=True)
class WorkersJoining(Event):
    """While a cluster starts: ``joined`` of the ``expected`` workers are there; the run starts
    at ``needed`` (``[cluster] min_workers``)."""

    kind: ClassVar[str] = "workers_joining"
    joined: int
    expected: int
    needed: int


@dataclass(frozen=True)
class WorkerJoined(Event):
    """A worker joined a running run (``late``: after it started) and serves ``slot``."""

    kind: ClassVar[str] = "worker_joined"
    name: str
    slot: str
    host: str = ""
    late: bool = True


@dataclass(frozen=True)
class WorkerLeft(Event):
    """A worker left a running run (it died, was retired, or its job ended)."""

    kind: ClassVar[str] = "worker_left"
    name: str
    slot: str
    reason: str = ""


@dataclass(frozen=True)
class PartitionsMoved(Event):
    """``count`` partitions that had not started move from ``source``'s worker to ``target``'s:
    ``reason`` is "not joined" (planned for a worker that was not there), "joined" (a late worker
    takes work), "left" (their worker left before starting them) or "retiring" (their worker
    retires soon: `executors.dask_retire`)."""

    kind: ClassVar[str] = "partitions_moved"
    source: str
    target: str
    count: int
    reason: str


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


@dataclass(frozen=True)
class HostStep(Event):
    """An install or doctor step on one host; ``done`` when the host is finished."""

    kind: ClassVar[str] = "host_step"
    host: str
    step: str
    done: bool = False
    failed: bool = False


@dataclass(frozen=True)
class HostOutput(Event):
    """A line an install step printed on one host (uv, the Cython build), as it is printed."""

    kind: ClassVar[str] = "host_output"
    host: str
    line: str
    step: str = ""


@dataclass(frozen=True)
class StepStarted(Event):
    """A pipeline step's process started (``agi steps run``)."""

    kind: ClassVar[str] = "step_started"
    pipeline_run: str
    step: str
    step_kind: str
    app: str | None = None
    log: str = ""


@dataclass(frozen=True)
class StepFinished(Event):
    """A pipeline step ended: ``status`` is ok, failed, skipped (a dependency failed), reused
    (``--resume``: it succeeded before) or interrupted; ``run_ids`` are the runs it made."""

    kind: ClassVar[str] = "step_finished"
    pipeline_run: str
    step: str
    status: str
    duration_s: float = 0.0
    run_ids: tuple[str, ...] = ()
    reason: str | None = None
