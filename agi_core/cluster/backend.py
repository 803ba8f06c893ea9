"""`ClusterBackend`: the whole contract between agi and one way of getting a Dask cluster.

The executor and `open_cluster` only ever talk to this class, never ask which backend they hold:
a backend is built from its `ClusterSpec` alone (``Backend(spec)``), started, asked for its
scheduler address, its `distributed.Security`, and which Dask worker serves which slot; then
closed. Backends that can outlive this process (a warm cluster, `agi cluster up`) also say how
to record themselves (`state`) and how a later process re-attaches to them (`attach`).

Before any cluster exists, the rest of agi asks the backend *class* what it implies (class
methods, given the settings and the backend's own options): the worker map, the threads of a
worker, the hosts `agi install` prepares, the port rules, what identifies a warm cluster, and
which environment variable names a worker's batch job or pod. Nothing else branches on a
backend's name. Its options are its own pydantic model (`Options`), read from
``[cluster.<name>]`` and checked with the rest of the settings (docs/backends.md).

Backends are found by name through the entry-point group ``agi_core.backends``
(`agi_core.settings.backend_plugins`; `registry.backend_class`).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from ..base.errors import AgiError
from ..base.events import EventSink, ignore

if TYPE_CHECKING:
    from ..gpus import Gpu
    from ..kernels.shape import ExecutionShape
    from ..settings.schema import ClusterSettings, WorkerSpec
    from .ports import PortRule
    from .spec import ClusterSpec

__all__ = ["ClusterBackend", "InstallKind", "NoOptions", "ProcessRecord"]

#: what `agi install` does for a backend: install on each host of `install_hosts` over SSH ("hosts"),
#: build one environment on a shared filesystem from the host(s) named there ("shared"), ship the
#: environment to the workers through Dask at run time ("ship"), or nothing ("none")
InstallKind = Literal["hosts", "shared", "ship", "none"]


class NoOptions(BaseModel):
    """The options of a backend that has none: ``[cluster.<name>]`` must then be empty."""

    model_config = ConfigDict(extra="forbid")


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

    Subclasses implement `launch` (called by the template `start`, which closes whatever was
    started when it fails) and `close`, and set `address` (and `dashboard` when they serve one)
    in `launch`. Every other method has a correct default for a backend whose Dask workers are
    named after their slots, run on the hosts of the worker map, and do not outlive this process.
    """

    #: the model of ``[cluster.<name>]`` (pydantic, ``extra="forbid"`` so a typo is refused with the
    #: key named), as an app's ``Args``; `spec.options` holds it validated, as JSON, `options` as the model
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: the environment variable that names the batch job or pod a worker runs in (the run record
    #: keeps it per partition); None: workers run in none
    job_id_env: ClassVar[str | None] = None
    #: the backend places the workers itself (batch jobs, pods): the worker map it implies names no
    #: host to reach, so no ``[cluster] scheduler`` is needed for them
    places_workers: ClassVar[bool] = False
    #: what `agi install` does for this backend (`InstallKind`); `install_hosts` names the hosts
    install_kind: ClassVar[InstallKind] = "hosts"

    #: the scheduler's address, e.g. ``tls://10.0.0.1:8786`` or ``tls://[fe80::1]:8786`` (set by `start`; ``tcp://`` with ``tls = false``)
    address: str = ""
    #: the dashboard's URL, or None when there is none
    dashboard: str | None = None

    def __init__(self, spec: ClusterSpec) -> None:
        """Build the backend from its spec alone: everything it needs (hosts, SSH and install
        settings, ports, TLS, the app, its own options) is in ``spec``, so the registry can
        construct any backend the same way. Do no I/O here: `launch` does it."""
        self.spec = spec

    @property
    def options(self) -> Any:
        """This backend's options (an instance of `Options`), from ``spec.options``."""
        return self.Options.model_validate(self.spec.options)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, emit: EventSink = ignore) -> None:
        """Start the scheduler and every worker of ``spec`` (`launch`); on any failure, Ctrl-C
        included, stop whatever was started (`close`) before the error goes on.

        The one copy of that clean-up: backends implement `launch` and `close` only.
        """
        try:
            await self.launch(emit)
        except BaseException:
            await self.close()
            raise

    @abc.abstractmethod
    async def launch(self, emit: EventSink = ignore) -> None:
        """Start the scheduler and launch every worker of ``spec``; set `address`. ``emit``
        receives progress events (`HostStep` per host, `Phase`): the core never prints.

        Returns once the scheduler accepts connections; the client waits for the workers (and
        asks `missing_workers_report` about those that never join). On failure, raise an
        `AgiError` naming the host and the cause: `start` stops what was started.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop everything this backend started, and return as soon as it is stopped (no fixed
        sleeps: poll briefly). Idempotent; also called after a failed (or partial) `launch`."""

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

    async def tend(self, *, work_left: bool, emit: EventSink = ignore) -> None:
        """Called by a run every half second or so while it goes: a backend whose workers end
        on their own (batch jobs: cancelled, preempted, out of walltime) replaces them here while
        ``work_left``, within its limits, and says so through ``emit``. Default: nothing."""

    def drain_window(self) -> float | None:
        """Seconds before a worker retires on its own (Dask's ``--lifetime``: a batch job's
        walltime) at which a run stops giving it work (`executors.dask_retire`), so that what it
        runs finishes there instead of running again elsewhere. None (default): workers stay."""
        return None

    async def retiring(self, worker: str, *, work_left: bool, emit: EventSink = ignore) -> None:
        """The Dask worker named ``worker`` stops taking work: it retires `drain_window` seconds
        from now. A batch backend submits its replacement now, while ``work_left``, so that the
        new worker joins before the old one leaves. Default: nothing."""

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

    def dry_run(self) -> str | None:
        """What `agi cluster up --dry-run` prints beyond its summary line (a batch script, a
        cluster request), or None for the table of workers. Nothing is contacted."""
        return None

    # -- what the rest of agi asks before a cluster exists (class methods) -------------------

    @classmethod
    def options_of(cls, cluster: ClusterSettings) -> Any:
        """The backend's options from ``[cluster.<backend>]`` of ``cluster`` (checked when the
        settings were read: `ClusterSettings` validates the table with `Options`)."""
        return cls.Options.model_validate(cluster.backend_table(cluster.backend))

    @classmethod
    def implied_worker_map(cls, cluster: ClusterSettings, options: Any) -> dict[str, WorkerSpec] | None:
        """The worker map this backend implies (a Slurm backend: its jobs' slots), or None: the
        settings' own ``[cluster.workers]`` (`ClusterSettings.worker_map` asks this first)."""
        return None

    @classmethod
    def threads(cls, options: Any, shape: ExecutionShape, *, local: bool, workers_on_host: int, local_threads: int | None) -> int:
        """Threads of one Dask worker: 1, or with the pool bit (``shape.pooled``) its host's cores
        shared among its workers (``local_threads``, this machine's cores; 0 elsewhere: decided on the host)."""
        if not shape.pooled:
            return 1
        if local and local_threads:
            return max(1, local_threads // max(workers_on_host, 1))
        return 0

    @classmethod
    def owns_gpu(cls, options: Any, shape: ExecutionShape, gpu: Gpu | None) -> bool:
        """Whether a worker assigned ``gpu`` (`gpus.gpu_workers`) gets the Dask resource ``GPU=1``."""
        return gpu is not None

    def install_host_for(self, host: str) -> str | None:
        """The host whose install brings the worker on ``host`` (a worker-map key) up to date,
        for ``[cluster.install] auto`` when it joins with other code: that host itself where
        `agi install` installs each host ("hosts"); None otherwise (the worker is refused): a
        "shared" backend names the host that builds its shared venv by overriding this, and
        "ship" or "none" install nothing agi could redo."""
        return host if self.install_kind == "hosts" else None

    async def reinstall(self, host: str, install: Callable[[str], Awaitable[None]]) -> bool:
        """Bring the install that the worker on ``host`` runs up to the manager's code
        (``[cluster.install] auto``): `install` (the install of `agi install`, for one host) on
        `install_host_for`'s host; False when there is nothing agi can install for it. Raises
        what ``install`` raises (`AgiError` naming the host and the cause)."""
        target = self.install_host_for(host)
        if target is None:
            return False
        await install(target)
        return True

    @classmethod
    def install_hosts(cls, cluster: ClusterSettings, options: Any) -> dict[str, list[str]]:
        """Host → roles that `agi install` prepares (`install_kind` says how): by default the
        scheduler host first, then every host of the worker map; none when the backend installs
        nothing ahead of a run (``"none"``, or ``"ship"``: the run ships the environment). The
        scheduler's port is Dask's, not SSH's, so its host is named without it."""
        if cls.install_kind in ("none", "ship"):
            return {}
        roles: dict[str, list[str]] = {}
        scheduler = cluster.scheduler_address()
        if scheduler is not None:
            roles.setdefault(str(scheduler.with_port(None)), []).append("scheduler")
        for host, spec in cluster.worker_map().items():
            roles.setdefault(host, []).append(f"{spec.count} workers")
        return roles

    @classmethod
    def port_rules(cls, cluster: ClusterSettings, options: Any) -> list[PortRule]:
        """The TCP connections the cluster needs (`agi cluster ports`); by default those of a
        scheduler and workers on the hosts the settings name (`ports.host_port_rules`)."""
        from .ports import host_port_rules

        return host_port_rules(cluster)

    @classmethod
    def default_min_workers(cls, options: Any, expected: int) -> int:
        """How many of the ``expected`` workers must have joined before a run starts when
        ``[cluster] min_workers`` is not set: by default all of them (a host that does not come
        usually means a mistake); a batch-queue backend, whose jobs start when the queue lets
        them, says 1 (`joining`)."""
        return expected

    @classmethod
    def identity(cls, options: Any) -> dict[str, Any]:
        """What of the options a warm cluster must match to be reused (their JSON); by default
        all of them. A backend leaves out what does not change the running cluster."""
        return options.model_dump(mode="json")
