"""Install an app on the scheduler host and every worker host, concurrently, with a live display."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..env import AgiEnv
from ..errors import AgiError
from ..modes import Mode
from ..settings import ClusterSettings, call_overrides
from .artifacts import ArtifactBuilder
from .host import HostReport, InstallContext, install_host

__all__ = ["InstallError", "InstallReport", "default_cache_dir", "hosts_of", "install_app"]


def default_cache_dir() -> Path:
    """Wheels, locks and wheelhouses built on the manager: ``$XDG_CACHE_HOME/agi_core``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "agi_core"


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
    """Host → roles: the scheduler host first, then every worker host (this machine when none)."""
    roles: dict[str, list[str]] = {}
    if cluster.scheduler:
        host = cluster.scheduler.rsplit(":", 1)[0] if cluster.scheduler.count(":") == 1 else cluster.scheduler
        roles.setdefault(host, []).append("scheduler")
    for host, spec in (cluster.workers or {"127.0.0.1": None}).items():
        roles.setdefault(host, []).append(f"{spec.count} workers" if spec is not None else "workers")
    return roles


class _Display:
    """A live table of hosts and their current step (only on a terminal)."""

    def __init__(self, hosts: Mapping[str, list[str]], enabled: bool) -> None:
        self.steps = {host: "waiting" for host in hosts}
        self.started = {host: time.perf_counter() for host in hosts}
        self.enabled = enabled
        self._live: Any = None

    def __enter__(self) -> _Display:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(stderr=True), refresh_per_second=8, transient=True)
            self._live.start()
        return self

    def step(self, host: str, step: str) -> None:
        self.steps[host] = step
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table(title="install", title_justify="left", show_edge=False)
        table.add_column("host")
        table.add_column("step")
        table.add_column("time", justify="right")
        for host, step in self.steps.items():
            done = step in ("installed", "updated", "unchanged", "failed")
            table.add_row(host, step if done else Spinner("dots", text=step),
                          f"{time.perf_counter() - self.started[host]:.1f} s" if not done else "")
        return table

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()


async def install_app(
    env: AgiEnv, *, scheduler: str | None = None, workers: Mapping[str, Any] | None = None,
    modes_enabled: Mode | int | str | None = None, cluster: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None, progress: bool | None = None,
) -> InstallReport:
    """Install ``env``'s app on the scheduler host and every worker host; raise `InstallError`
    (after every host has finished) when any failed."""
    settings = env.settings(cluster=call_overrides(scheduler, workers, cluster))
    modes = Mode.parse(modes_enabled) if modes_enabled is not None else settings.cluster.mode
    hosts = hosts_of(settings.cluster)
    builder = ArtifactBuilder(env, cache_dir or default_cache_dir(), cython=bool(modes & Mode.CYTHON))
    ctx = InstallContext(env, settings.cluster, modes, builder)
    limit = asyncio.Semaphore(settings.cluster.install.concurrency)
    start = time.perf_counter()
    with _Display(hosts, sys.stderr.isatty() if progress is None else progress) as display:

        async def one(host: str) -> HostReport:
            async with limit:
                return await install_host(host, hosts[host], ctx, display.step)

        reports = await asyncio.gather(*(one(host) for host in hosts))
    report = InstallReport(list(reports), time.perf_counter() - start)
    if report.failed:
        raise InstallError(report)
    return report
