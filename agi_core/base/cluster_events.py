"""The events of clusters, host installs and pipeline steps: none of them comes from a run of this
machine, so `events` loads this module only when one of them is first named (each event is a frozen
dataclass, and making one costs about half a millisecond at every start of `agi`).

Import them from `agi_core.base.events`, as every other event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .event_base import Event

__all__ = ["ClusterReady", "HostOutput", "HostStep", "PartitionsMoved", "StepFinished", "StepStarted", "WorkerJoined",
           "WorkerLeft", "WorkersJoining"]


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
