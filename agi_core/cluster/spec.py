"""`ClusterSpec`: the Dask processes a run needs, declared from settings (hosts, names, ports, threads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SettingsError
from ..hosts import LOCAL_HOST, is_local_host
from ..modes import Mode
from ..settings import ClusterSettings, DaskSettings, WorkerSpec

__all__ = ["ClusterSpec", "WorkerProcess", "cluster_spec", "host_address"]


def host_address(host: str) -> str:
    """The network address in a worker-map key: ``user@10.0.0.2:22`` → ``10.0.0.2``."""
    name = host.rpartition("@")[2]
    if name.count(":") == 1:
        name = name.partition(":")[0]
    return name


@dataclass(frozen=True)
class WorkerProcess:
    """One Dask worker process = one slot, named like its slot."""

    name: str  # "<host>-<k>"
    host: str  # the worker-map key (how to reach the host)
    address: str  # the IP/name Dask binds (--host)
    nthreads: int  # 0: decided on the host (its cores / its worker count)
    gpu: bool


@dataclass(frozen=True)
class ClusterSpec:
    scheduler_host: str  # how to reach the scheduler's host
    scheduler_port: int
    dashboard_port: int | None
    workers: tuple[WorkerProcess, ...]
    dask: DaskSettings
    tls: bool
    embedded: bool  # no scheduler configured and only this machine: ports are picked freely

    @property
    def protocol(self) -> str:
        return "tls" if self.tls else "tcp"

    @property
    def scheduler_address(self) -> str:
        return f"{self.protocol}://{host_address(self.scheduler_host)}:{self.scheduler_port}"

    @property
    def local_only(self) -> bool:
        return is_local_host(host_address(self.scheduler_host)) and all(is_local_host(w.address) for w in self.workers)

    def hosts(self) -> dict[str, list[WorkerProcess]]:
        grouped: dict[str, list[WorkerProcess]] = {}
        for worker in self.workers:
            grouped.setdefault(worker.host, []).append(worker)
        return grouped

    def identity(self) -> dict[str, Any]:
        """What a warm cluster must match to be reused: scheduler, worker names and hosts, TLS."""
        scheduler = "embedded (this machine)" if self.embedded else self.scheduler_address
        return {"scheduler": scheduler, "tls": self.tls,
                "workers": sorted([w.name, w.address, w.nthreads] for w in self.workers)}


def cluster_spec(cluster: ClusterSettings, mode: Mode, *, local_threads: int | None = None) -> ClusterSpec:
    """The processes for ``cluster``'s worker map (this machine, one worker per core, when empty).

    Threads: one per worker, or with the pool bit the host's cores shared among its workers.
    """
    workers_map = dict(cluster.workers) or {LOCAL_HOST: WorkerSpec(count=cluster.local_worker_count())}
    scheduler = cluster.scheduler
    remote = [host for host in workers_map if not is_local_host(host_address(host))]
    if scheduler is None and remote:
        raise SettingsError(f"the worker map names remote hosts ({', '.join(remote[:3])}) but no scheduler",
                            fix='set [cluster] scheduler = "HOST:PORT" (a host every worker can reach)')
    embedded = scheduler is None
    host, port = (scheduler or LOCAL_HOST), cluster.dask.scheduler_port
    if scheduler and scheduler.count(":") == 1 and scheduler.rpartition(":")[2].isdigit():
        host, port = scheduler.rpartition(":")[0], int(scheduler.rpartition(":")[2])
    processes = []
    for worker_host, spec in workers_map.items():
        threads = 0 if mode & Mode.POOL else 1
        if threads == 0 and is_local_host(host_address(worker_host)) and local_threads:
            threads = max(1, local_threads // max(spec.count, 1))
        for k in range(spec.count):
            processes.append(WorkerProcess(f"{worker_host}-{k}", worker_host, host_address(worker_host), threads, "gpu" in spec.capabilities))
    if not processes:
        raise SettingsError("the worker map has no workers (every count is 0)", fix="give at least one host a count > 0 in [cluster.workers]")
    return ClusterSpec(host, 0 if embedded else port, None if embedded else cluster.dask.dashboard_port, tuple(processes),
                       cluster.dask, cluster.tls, embedded)
