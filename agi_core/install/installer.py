"""Install an app on the scheduler host and every worker host, concurrently.

The installer never prints: each host's steps are `HostStep` events passed to ``on_event``;
`agi install` draws them as a live table (`agi_core.cli.install_view`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ..app.env import AgiEnv
from ..base import paths
from ..base.errors import AgiError
from ..base.events import Event, EventSink, HostStep, ignore
from ..base.modes import Mode
from ..kernels.shape import ExecutionShape
from ..settings import ClusterSettings
from .artifacts import ArtifactBuilder, cpu_extras
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
    """Host → roles, as the cluster's backend says (`ClusterBackend.install_hosts`): by default
    the scheduler host first, then every host of the worker map (this machine when none is
    configured: `ClusterSettings.worker_map`); a batch backend names the login node that builds
    one venv on the shared filesystem. The scheduler's port is Dask's, not SSH's, so its host is
    named without it.
    """
    from ..cluster.registry import backend_class

    backend = backend_class(cluster.backend)
    return backend.install_hosts(cluster, backend.options_of(cluster))


def _fan_out(sinks: list[EventSink]) -> EventSink:
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return emit


async def install_app(
    env: AgiEnv, cluster: ClusterSettings, mode: Mode, *,
    on_event: EventSink | None = None, cache_dir: Path | None = None, only: Collection[str] | None = None,
) -> InstallReport:
    """Install ``env``'s app on the scheduler host and every worker host of ``cluster`` (resolved
    settings: `AGI.install` resolves the call first); raise `InstallError` (after every host has
    finished) when any failed. The kernel kinds of ``mode`` (resolved once, by `run.resolve`: `ExecutionShape`) say what is built or warmed.

    ``on_event`` receives every host's `HostStep` events (a ``waiting`` step for each host first);
    nothing is printed here: `agi install` draws them with `agi_core.cli.install_view.InstallView`.

    ``only``: install just these hosts (a worker that joins a run with other code, `[cluster.install] auto`).
    """
    hosts = hosts_of(cluster)
    if only is not None:
        hosts = {host: hosts.get(host, ["worker"]) for host in only}
    shape = ExecutionShape.of(mode, compiled=cluster.compiled, rapids=cluster.rapids)
    builder = ArtifactBuilder(env, cache_dir or paths.cache_dir(), cython="cython" in shape.builds,
                              find_links=cluster.install.find_links, extras=cpu_extras(shape))
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
