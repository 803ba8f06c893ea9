"""What every executor shares: the job description, the per-partition outcome, the interface."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plan import WorkPlan

__all__ = ["Executor", "JobSpec", "Outcome"]


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run partitions of one run; small and picklable."""

    src_dir: Path
    module_name: str
    class_name: str | None
    args: Mapping[str, Any]
    mode: int
    out_dir: Path


@dataclass
class Outcome:
    """What happened to one partition. ``result`` is the value `App.work` returned."""

    id: str
    slot: str
    status: str  # "ok", "failed" or "skipped" (a dependency failed)
    host: str = ""
    worker: str = ""
    start: float = 0.0
    end: float = 0.0
    kernel: str = ""
    device: str = ""
    error: str | None = None
    note: str = ""
    retries: int = 0
    result: Any = field(default=None, repr=False)

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def record(self) -> dict[str, Any]:
        """The outcome as it appears in the run record (everything but the result)."""
        return {
            "id": self.id, "slot": self.slot, "worker": self.worker, "host": self.host, "status": self.status,
            "start": self.start, "end": self.end, "duration_s": round(self.duration, 6), "kernel": self.kernel,
            "device": self.device, "retries": self.retries, "cache_hit": False, "error": self.error,
            **({"note": self.note} if self.note else {}),
        }


class Executor(abc.ABC):
    """Runs a plan's partitions on its slots and yields each `Outcome` as soon as it is known.

    Implementations: `LocalExecutor` (mode 0 in this process, or one process per slot with the
    pool bit). Each partition runs on the slot the plan assigns it to, after its dependencies;
    a failed partition does not stop the others, but its dependents are skipped.
    """

    name: str

    @abc.abstractmethod
    def execute(self, plan: WorkPlan, job: JobSpec) -> AsyncIterator[Outcome]:
        """Run every partition of ``plan``; yield outcomes in completion order."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop everything this executor started; safe to call twice and after errors."""

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
