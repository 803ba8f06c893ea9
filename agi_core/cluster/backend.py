"""`ClusterBackend`: the whole contract between agi and one way of getting a Dask cluster.

The executor and `open_cluster` only ever talk to this class, never ask which backend they hold:
a backend is built from its `ClusterSpec` alone (``Backend(spec)``), started, asked for its
scheduler address, its `distributed.Security`, and which Dask worker serves which slot; then
closed. Backends that can outlive this process (a warm cluster, `agi cluster up`) also say how
to record themselves (`state`) and how a later process re-attaches to them (`attach`).

Backends live one per module and are found by name in `registry.known_backends`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AgiError
from ..events import EventSink, ignore

if TYPE_CHECKING:
    from .spec import ClusterSpec

__all__ = ["ClusterBackend", "ProcessRecord"]


@dataclass(frozen=True)
class ProcessRecord:
    """One process (or batch job) a backend started and a later process may have to stop."""

    host: str  # the worker-map key of its host (how to reach it)
    role: str  # "scheduler" or "worker"
    name: str  # the slot's Dask worker name, or "scheduler"
    pid: int  # on its host (for launched processes: also its process group)
    log: str  # its log file on its host


class ClusterBackend(abc.ABC):
    """A Dask cluster that agi starts (or attaches to) for a run.

    Life cycle: ``backend = Backend(spec)``; ``await backend.start()``; connect a client to
    ``backend.address`` with ``backend.security()``; ``await backend.close()``. Also usable as
    ``async with Backend(spec) as backend``.

    Subclasses must implement `start` and `close`, and set `address` (and `dashboard` when they
    serve one) in `start`. Every other method has a correct default for a backend whose Dask
    workers are named after their slots and that does not outlive this process.
    """

    #: the scheduler's address, e.g. ``tls://10.0.0.1:8786`` or ``tls://[fe80::1]:8786`` (set by `start`; ``tcp://`` with ``tls = false``)
    address: str = ""
    #: the dashboard's URL, or None when there is none
    dashboard: str | None = None

    def __init__(self, spec: ClusterSpec) -> None:
        """Build the backend from its spec alone: everything it needs (hosts, SSH and install
        settings, ports, TLS, the app) is in ``spec``, so the registry can construct any backend
        the same way. Do no I/O here: `start` does it."""
        self.spec = spec

    # -- life cycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def start(self, emit: EventSink = ignore) -> None:
        """Start the scheduler and launch every worker of ``spec``; set `address`. ``emit``
        receives progress events (`HostStep` per host, `Phase`): the core never prints.

        Returns once the scheduler accepts connections; the client waits for the workers (and
        asks `missing_workers_report` about those that never join). On failure, stop whatever
        was started, then raise an `AgiError` naming the host and the cause.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop everything this backend started. Idempotent; also called after a failed start."""

    async def __aenter__(self) -> ClusterBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what a client needs ----------------------------------------------------------------

    def security(self) -> Any:
        """The `distributed.Security` a client must use (None: plain TCP)."""
        return None

    def worker_names(self) -> dict[str, str]:
        """Slot name → the name its Dask worker registers with, for every slot of the spec.

        The executor sends each partition to the worker serving its slot through this map. By
        default a worker is named after its slot; a backend whose workers name themselves (a
        batch job's worker, say) overrides it.
        """
        return {worker.slot: worker.name for worker in self.spec.workers}

    async def missing_workers_report(self, joined: set[str]) -> str:
        """Why the workers of the spec not in ``joined`` (Dask worker names) never joined: for
        each, where it ran and the end of its log. "" when the backend cannot tell."""
        return ""

    # -- warm clusters (outliving this process) ---------------------------------------------

    @classmethod
    def warm(cls, spec: ClusterSpec) -> ClusterBackend:
        """A backend for ``spec`` whose processes outlive this process (`agi cluster up`).

        The default refuses: only backends that start detached processes can be kept warm.
        """
        raise AgiError(f"the cluster backend '{spec.backend}' cannot keep a cluster running between runs",
                       fix="start a warm cluster with [cluster] backend = \"ssh\", or run without `agi cluster up`")

    def state(self) -> dict[str, Any]:
        """JSON-ready facts that `attach` needs to find this cluster again from another process
        (at least ``address``, ``dashboard`` and ``processes``)."""
        return {"address": self.address, "dashboard": self.dashboard, "processes": []}

    @classmethod
    def attach(cls, spec: ClusterSpec, state: dict[str, Any]) -> ClusterBackend:
        """The backend of a running warm cluster, rebuilt from its `state` (nothing is started;
        `close` stops it)."""
        raise AgiError(f"the cluster backend '{spec.backend}' cannot attach to a running cluster",
                       fix=f"stop it by hand, then delete its state file (agi cluster down {spec.app})")

    def started(self) -> tuple[ProcessRecord, ...]:
        """The processes this backend started (for `agi cluster status`); () when it keeps none."""
        return ()
