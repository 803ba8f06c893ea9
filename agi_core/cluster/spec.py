"""`ClusterSpec`: everything a cluster backend needs to start a run's Dask processes, as one value.

A backend is built from its spec alone (``Backend(spec)``): hosts, slot and worker names, ports,
threads, TLS, what launching on hosts needs (SSH settings, agi's folder and the app's venv on
each host, the SSH fan-out), and the backend's own options (``[cluster.<name>]``, as JSON).
`cluster_spec` derives it from settings once, asking the backend's class what its options imply
(threads, GPUs, the worker map); nothing downstream re-reads settings, and the spec names no
backend but by its registry name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import SettingsError
from ..base.hosts import LOCAL_HOST, HostAddress, slot_name
from ..base.modes import Mode
from ..gpus import Gpu, gpu_workers, gpus_of, worker_env
from ..kernels.shape import ExecutionShape
from ..settings import ClusterSettings, DaskSettings, SshSettings

__all__ = ["ClusterSpec", "WorkerProcess", "cluster_spec", "spec_for"]


@dataclass(frozen=True)
class WorkerProcess:
    """One Dask worker process, serving one slot of the work plan."""

    slot: str  # the plan's slot name, "<worker-map key>-<k>"
    name: str  # the name the Dask worker registers with (the slot's name for the ssh backend)
    host: str  # the worker-map key (how to reach the host: [user@]host[:ssh_port])
    address: str  # the IP or name Dask binds (--host); IPv6 without brackets
    nthreads: int  # 0: decided on the host (its cores / its worker count)
    gpu: bool  # it owns a GPU: Dask resource GPU=1 (`gpus.gpu_workers`)
    env: tuple[tuple[str, str], ...] = ()  # its environment: the host's `env` setting, CUDA_VISIBLE_DEVICES

    @property
    def bind_host(self) -> str:
        """The address as Dask's ``host`` options want it: IPv6 in brackets."""
        return HostAddress(self.address).url_host


@dataclass(frozen=True)
class ClusterSpec:
    """The Dask processes of a run and how to start them; see `cluster_spec`."""

    app: str  # the app's name: its venv and log folder on each host
    backend: str  # the registry name of the backend that starts it (`registry.known_backends`)
    scheduler: HostAddress  # the scheduler's host (user: its SSH user); port: the Dask port (0: any free one)
    dashboard_port: int | None
    workers: tuple[WorkerProcess, ...]
    dask: DaskSettings
    ssh: SshSettings
    root: str  # agi's folder on each host (logs, TLS files, dask.yaml)
    venv: str  # the app's venv on remote hosts (this machine runs the manager's Python)
    fan_out: int  # hosts reached over SSH at the same time
    tls: bool
    embedded: bool  # no scheduler configured and only this machine: ports are picked freely
    app_distribution: str | None = None  # the app's distribution name, for the version check
    app_version: str | None = None  # the version the manager runs (its pyproject.toml)
    local_python: str | None = None  # the interpreter of processes on this machine; None: the manager's
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # the backend's ``[cluster.<name>]`` (JSON of its `Options`)
    project_dir: str | None = None  # the app's project (its pyproject.toml): backends that ship its wheel build it from here
    min_workers: int = 0  # workers that must have joined before a run starts (`joining`); 0: all
    join_timeout: float | None = None  # seconds to wait for them (and for the rest); None: dask.start_timeout

    @property
    def join_wait(self) -> float:
        """Seconds a run waits for its workers to join (`join_timeout`, else ``dask.start_timeout``)."""
        return self.join_timeout if self.join_timeout is not None else self.dask.start_timeout

    @property
    def protocol(self) -> str:
        return "tls" if self.tls else "tcp"

    @property
    def scheduler_host(self) -> str:
        """The scheduler's host as a session key (``[user@]host``: the SSH port comes from settings)."""
        return str(HostAddress(self.scheduler.host, self.scheduler.user))

    @property
    def scheduler_port(self) -> int:
        return self.scheduler.port or 0

    @property
    def scheduler_address(self) -> str:
        """``tls://10.0.0.1:8786`` (``tcp://`` with ``tls = false``); IPv6 in brackets: ``tls://[::1]:8786``."""
        return f"{self.protocol}://{self.scheduler.url_host}:{self.scheduler_port}"

    @property
    def local_only(self) -> bool:
        """True when the scheduler and every worker are on this machine."""
        return self.scheduler.is_local and all(HostAddress.parse(w.host).is_local for w in self.workers)

    def with_ports(self, scheduler_port: int, dashboard_port: int | None) -> ClusterSpec:
        return dataclasses.replace(self, scheduler=self.scheduler.with_port(scheduler_port), dashboard_port=dashboard_port)

    def hosts(self) -> dict[str, list[WorkerProcess]]:
        grouped: dict[str, list[WorkerProcess]] = {}
        for worker in self.workers:
            grouped.setdefault(worker.host, []).append(worker)
        return grouped

    def tls_names(self) -> list[str]:
        """The addresses the cluster's TLS certificate must be valid for."""
        return [self.scheduler.host, *(w.address for w in self.workers)]

    def identity(self) -> dict[str, Any]:
        """What a warm cluster must match to be reused: backend, scheduler, worker names and hosts, TLS."""
        scheduler = "embedded (this machine)" if self.embedded else self.scheduler_address
        identity = {"backend": self.backend, "scheduler": scheduler, "tls": self.tls,
                    "workers": sorted([w.name, w.address, w.nthreads] + ([w.gpu, dict(w.env)] if w.gpu or w.env else [])
                                      for w in self.workers)}
        from .registry import backend_class

        backend = backend_class(self.backend)
        options = backend.identity(backend.Options.model_validate(self.options))
        if options:  # the backend's own options that shape the cluster (a Slurm job's resources)
            identity["options"] = options
        return identity

    # -- JSON (a warm cluster's state file records the spec it was started with) -------------

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["scheduler"] = {"host": self.scheduler.host, "user": self.scheduler.user, "port": self.scheduler.port}
        data["dask"], data["ssh"] = self.dask.model_dump(mode="json"), self.ssh.model_dump(mode="json")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {key: value for key, value in data.items() if key in known}  # a field of an older agi is dropped
        fields["scheduler"] = HostAddress(**fields["scheduler"])
        fields["workers"] = tuple(WorkerProcess(**{**w, "env": tuple(tuple(kv) for kv in w.get("env", ()))}) for w in fields["workers"])
        fields["dask"], fields["ssh"] = DaskSettings.model_validate(fields["dask"]), SshSettings.model_validate(fields["ssh"])
        return cls(**fields)


def on_cluster(cluster: ClusterSettings, shape: ExecutionShape | Mode) -> ExecutionShape:
    """``shape`` with the cluster bit (a `Mode`: its shape under ``cluster``'s kernel settings)."""
    if not isinstance(shape, ExecutionShape):
        shape = ExecutionShape.of(Mode(int(shape)) | Mode.CLUSTER, compiled=cluster.compiled, rapids=cluster.rapids)
    return shape if shape.cluster else shape.model_copy(update={"cluster": True, "executor": "dask"})


def cluster_spec(cluster: ClusterSettings, shape: ExecutionShape | Mode, *, app: str = "", app_distribution: str | None = None,
                 app_version: str | None = None, local_threads: int | None = None,
                 gpus: Mapping[str, Sequence[Gpu]] | None = None) -> ClusterSpec:
    """The processes for ``cluster``'s worker map (`ClusterSettings.worker_map`).

    ``shape``: the run's (`RunRequest.shape`; a `Mode` stands for its shape). Threads: one per
    worker, or with the pool bit the host's cores shared among its workers
    (``local_threads`` for this machine; decided on the host elsewhere). ``app`` names the
    venv and logs on hosts; backends that launch processes there need it. ``gpus``: each host's
    GPUs (`gpus.gpus_of`); the workers that own one (`gpus.gpu_workers`) get the Dask resource
    ``GPU=1`` and their own ``CUDA_VISIBLE_DEVICES``, as the work plan's slots say.

    The backend's class decides what its options imply (`ClusterBackend.threads`, `owns_gpu`,
    `implied_worker_map`, `places_workers`): a Slurm backend's workers are its jobs' slots, with
    ``cores / processes`` threads under the pool bit and a GPU only with the rapids bit.
    """
    from .registry import backend_class

    backend = backend_class(cluster.backend)
    options = backend.options_of(cluster)
    shape = on_cluster(cluster, shape)
    workers_map = cluster.worker_map()
    scheduler = cluster.scheduler_address()
    remote = [host for host in workers_map if not HostAddress.parse(host).is_local]
    if scheduler is None and remote and not backend.places_workers:
        raise SettingsError(f"the worker map names remote hosts ({', '.join(remote[:3])}) but no scheduler",
                            fix='set [cluster] scheduler = "HOST:PORT" (a host every worker can reach)')
    embedded = scheduler is None
    if scheduler is None:
        scheduler = HostAddress(LOCAL_HOST, port=0)
    elif scheduler.port is None:
        scheduler = scheduler.with_port(cluster.dask.scheduler_port)
    processes = []
    for host, worker in workers_map.items():
        where = HostAddress.parse(host)
        threads = backend.threads(options, shape, local=where.is_local, workers_on_host=worker.count, local_threads=local_threads)
        host_gpus = (gpus or {}).get(host, ())
        for k, gpu in enumerate(gpu_workers(worker, host_gpus, host)):
            slot = slot_name(host, k)
            env = tuple(worker_env(worker, gpu, len(host_gpus)).items())
            processes.append(WorkerProcess(slot, slot, host, where.host, threads, backend.owns_gpu(options, shape, gpu), env))
    if not processes:
        raise SettingsError("the worker map has no workers (every count is 0)",
                            fix="give at least one host a count > 0 in [cluster.workers]")
    # A run's own cluster serves its dashboard on any free port unless the settings name another port
    # than the default 8787 (several runs at once never fight over 8787); a warm cluster
    # (`manage.cluster_up`) and a configured scheduler keep the settings' port.
    dashboard_port = cluster.dask.dashboard_port
    if embedded and dashboard_port == type(cluster.dask).model_fields["dashboard_port"].default:
        dashboard_port = 0
    return ClusterSpec(
        app=app, backend=cluster.backend, scheduler=scheduler, dashboard_port=dashboard_port,
        workers=tuple(processes), dask=cluster.dask, ssh=cluster.ssh, root=cluster.install.root.rstrip("/") or "/",
        venv=cluster.install.venv_path(app), fan_out=cluster.install.concurrency, tls=cluster.tls, embedded=embedded,
        app_distribution=app_distribution, app_version=app_version, options=options.model_dump(mode="json"),
        min_workers=_min_workers(cluster, backend, options, len(processes)), join_timeout=cluster.join_timeout,
    )


def _min_workers(cluster: ClusterSettings, backend: Any, options: Any, expected: int) -> int:
    from .joining import resolve_min_workers

    return resolve_min_workers(cluster.min_workers, expected, backend_default=backend.default_min_workers(options, expected))


def spec_for(cluster: ClusterSettings, shape: ExecutionShape | Mode, app: str, *, app_distribution: str | None = None,
             app_version: str | None = None, local_python: Path | None = None, project_dir: Path | None = None) -> ClusterSpec:
    """The spec of ``app``'s cluster under ``cluster`` settings, for ``shape`` (`RunRequest.shape`,
    resolved by `run.resolve`, or a `Mode`; the cluster bit is implied), with this machine's cores for local threads.

    ``app_distribution`` and ``app_version`` (`AgiEnv.distribution`, `AgiEnv.version`) let the
    version check compare the app installed on workers; without them, only agi's and Dask's
    packages and Python are compared. ``local_python``: the app's environment, when workers on
    this machine cannot run in the manager's Python (see `agi_core.app.interpreter`). The hosts' GPUs
    are this machine's (probed now) and those `agi install` / `agi doctor` found elsewhere.
    """
    import dataclasses
    import os

    spec = cluster_spec(cluster, shape, app=app, app_distribution=app_distribution, app_version=app_version,
                        local_threads=os.cpu_count(), gpus=gpus_of(cluster.worker_map()))
    spec = dataclasses.replace(spec, project_dir=str(project_dir)) if project_dir else spec  # backends that ship the app
    return dataclasses.replace(spec, local_python=str(local_python)) if local_python else spec
