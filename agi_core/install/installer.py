"""Install an app on the scheduler host and every worker host, concurrently.

The installer never prints: each host's steps are `HostStep` events passed to ``on_event``;
`agi install` draws them as a live table (`agi_core.cli.install_view`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..env import AgiEnv
from ..errors import AgiError
from ..events import Event, EventSink, HostStep, ignore
from ..hosts import LOCAL_HOST
from ..modes import Mode
from ..settings import ClusterSettings
from ..settings_schema import SLURM_HOST
from .artifacts import ArtifactBuilder
from .host import HostReport, InstallContext, install_host

__all__ = ["InstallError", "InstallReport", "hosts_of", "install_app"]


@dataclass
class InstallReport:
    hosts: list[HostReport]
    seconds: float

    @property
    def failed(self) -> list[HostReport]:
        return [h for h in self.hosts if not h.ok]


class InstallError(AgiError):
    """Some hosts failed; ``report`` has every host's outcome."""

    def __init__(self, report: InstallReport) -> None:
        names = "; ".join(f"{h.host}: {h.cause}" for h in report.failed)
        fixes = "; ".join(f"{h.host}: {h.fix}" for h in report.failed if h.fix)
        super().__init__(f"install failed on {len(report.failed)} of {len(report.hosts)} host(s): {names}", fix=fixes or None)
        self.report = report


def hosts_of(cluster: ClusterSettings) -> dict[str, list[str]]:
    """Host → roles: the scheduler host first, then every host of the worker map (this machine
    when none is configured: `ClusterSettings.worker_map`).

    The scheduler's port is Dask's, not SSH's, so its host is named without it.

    With ``backend = "slurm"``, one host: the login node (``[cluster.slurm] login``, else this
    machine), which builds the venv once on the shared filesystem that every compute node sees
    (``[cluster.install] root``); the scheduler runs in the manager's own Python.
    """
    if cluster.backend == SLURM_HOST:
        slurm = cluster.slurm
        return {slurm.login or LOCAL_HOST: [f"Slurm workers: {slurm.jobs * slurm.processes} (shared venv)"]}
    roles: dict[str, list[str]] = {}
    scheduler = cluster.scheduler_address()
    if scheduler is not None:
        roles.setdefault(str(scheduler.with_port(None)), []).append("scheduler")
    for host, spec in cluster.worker_map().items():
        roles.setdefault(host, []).append(f"{spec.count} workers")
    return roles


def _fan_out(sinks: list[EventSink]) -> EventSink:
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return emit


async def install_app(
    env: AgiEnv, cluster: ClusterSettings, mode: Mode, *,
    on_event: EventSink | None = None, cache_dir: Path | None = None,
) -> InstallReport:
    """Install ``env``'s app on the scheduler host and every worker host of ``cluster`` (resolved
    settings: `AGI.install` resolves the call first); raise `InstallError` (after every host has
    finished) when any failed. The cython bit of ``mode`` (resolved once, by `run.resolve`) builds kernels.

    ``on_event`` receives every host's `HostStep` events (a ``waiting`` step for each host first);
    nothing is printed here: `agi install` draws them with `agi_core.cli.install_view.InstallView`.
    """
    hosts = hosts_of(cluster)
    builder = ArtifactBuilder(env, cache_dir or paths.cache_dir(), cython=bool(mode & Mode.CYTHON),
                              find_links=cluster.install.find_links)
    ctx = InstallContext(env, cluster, mode, builder)
    limit = asyncio.Semaphore(cluster.install.concurrency)
    emit = on_event or ignore
    start = time.perf_counter()
    for host in hosts:
        emit(HostStep(host, "waiting"))

    async def one(host: str) -> HostReport:
        async with limit:
            return await install_host(host, hosts[host], ctx, emit)

    reports = await asyncio.gather(*(one(host) for host in hosts))
    report = InstallReport(list(reports), time.perf_counter() - start)
    if report.failed:
        raise InstallError(report)
    return report
