"""`SshCluster`, the default backend (``ssh``): in-process when everything is on this machine
(and runs the manager's Python), processes launched on the hosts over SSH otherwise.

The embedded cluster starts in about a second and leaves nothing behind; a cluster that spans
hosts needs its processes started there. The choice depends on the spec only, so it is made
here, once, and the rest of agi never asks which one runs.
"""

from __future__ import annotations

from typing import Any

from ..base.events import EventSink, ignore
from .backend import ClusterBackend, ProcessRecord
from .inprocess import InProcessCluster
from .launched import LaunchedCluster
from .spec import ClusterSpec

__all__ = ["SshCluster"]


class SshCluster(ClusterBackend):
    """Delegates to `InProcessCluster` (this machine only) or `LaunchedCluster` (any host)."""

    def __init__(self, spec: ClusterSpec) -> None:
        super().__init__(spec)
        # In-process workers run the manager's Python: an app that needs its own environment
        # gets launched processes on this machine too.
        embedded = spec.local_only and spec.local_python is None
        self.inner: ClusterBackend = InProcessCluster(spec) if embedded else LaunchedCluster(spec)

    @property  # type: ignore[override]
    def address(self) -> str:
        return self.inner.address

    @property  # type: ignore[override]
    def dashboard(self) -> str | None:
        return self.inner.dashboard

    async def launch(self, emit: EventSink = ignore) -> None:
        await self.inner.launch(emit)

    async def close(self) -> None:
        await self.inner.close()

    def security(self) -> Any:
        return self.inner.security()

    def worker_names(self) -> dict[str, str]:
        return self.inner.worker_names()

    async def missing_workers_report(self, joined: set[str]) -> str:
        return await self.inner.missing_workers_report(joined)

    async def tend(self, *, work_left: bool, emit: EventSink = ignore) -> None:
        await self.inner.tend(work_left=work_left, emit=emit)

    def started(self) -> tuple[ProcessRecord, ...]:
        return self.inner.started()

    # A warm cluster must outlive this process: always launched processes, also on this machine.

    @classmethod
    def warm(cls, spec: ClusterSpec) -> ClusterBackend:
        return LaunchedCluster.warm(spec)

    @classmethod
    def attach(cls, spec: ClusterSpec, state: dict[str, Any]) -> ClusterBackend:
        return LaunchedCluster.attach(spec, state)
