"""`InProcessCluster`: the embedded cluster for a worker map that names only this machine.

The scheduler runs in this process; each slot is a worker process managed by a Nanny (also in
this process), named after its slot. Nothing outlives the run: `close` stops it all, and if
this process is killed its worker processes are killed with it (`agi_core.base.lifeline`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import time
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, HostStep, Notice, Phase, ignore
from ..base.lifeline import MANAGER_PID_ENV, PRELOAD
from ..base.main_guard import reimport_refused
from .backend import ClusterBackend
from .spec import ClusterSpec

__all__ = ["InProcessCluster", "dashboard_address", "http_address"]


def dashboard_address(port: int | None, host: str) -> str | None:
    """A dashboard only when asked for and when bokeh (which serves it) is installed, bound to
    ``host`` (the scheduler's own interface), never to every interface."""
    if port is None or importlib.util.find_spec("bokeh") is None:
        return None
    return http_address(host, port)


def http_address(host: str, port: int) -> str:
    """Where a Dask process serves HTTP (dashboard, /health, /info, logs): ``host:port``.

    Dask binds a bare ``:port`` to 0.0.0.0, which serves cluster info and logs to the whole
    network; naming the process's own interface keeps a local cluster on loopback. Dask cannot
    parse an IPv6 address here: for one, the port alone is returned (0.0.0.0, as before)."""
    return str(port) if ":" in host.strip("[]") else f"{host}:{port}"


def _dashboard_port(spec: ClusterSpec, emit: EventSink) -> int | None:
    """``[cluster.dask] dashboard_port``, or 0 (any free port, said in a notice) when another
    process (another run's dashboard) holds it: a run's own cluster need not fight for it."""
    port = spec.dashboard_port
    if not port or dashboard_address(port, spec.scheduler.host) is None:
        return port
    family = socket.AF_INET6 if spec.scheduler.is_ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((spec.scheduler.host, port))
        except OSError:
            emit(Notice(f"the dashboard port {port} on {spec.scheduler.host} is in use (another run's dashboard?): "
                        "this run's dashboard takes a free port ([cluster.dask] dashboard_port)"))
            return 0
    return port


async def _watch_start(cluster: Any, names: list[str], emit: EventSink, starting: Any) -> None:
    """Say how the start goes, instead of seconds of nothing: the scheduler up, then each worker as
    it joins (``HostStep`` per slot, ``Phase`` "workers joined n/m"). Polled until ``starting``
    is done, then once more (the last workers join as it ends)."""
    import asyncio

    from distributed.core import Status

    for name in names:
        emit(HostStep(name, "starting"))
    up, joined = False, set()
    while True:
        scheduler = getattr(cluster, "scheduler", None)
        if not up and scheduler is not None and getattr(scheduler, "status", None) == Status.running:
            up = True
            emit(HostStep("scheduler", f"up at {scheduler.address}", done=True))
        if up:
            now = {str(w.name) for w in list(scheduler.workers.values())} & set(names)
            for name in sorted(now - joined):
                emit(HostStep(name, "joined", done=True))
            if now - joined:
                joined |= now
                emit(Phase("cluster", f"workers joined {len(joined)}/{len(names)}"))
        if starting.done():
            return
        await asyncio.sleep(0.1)


async def _started(cluster: Any, emit: EventSink = ignore, names: list[str] | None = None) -> Any:
    """``await cluster`` (a `SpecCluster`'s start), never cut short by a cancellation: its start
    goes on in Dask's own tasks whatever happens to the caller (the Nannies are added to
    ``cluster.workers`` only once all are up, and ``close()`` does nothing before the cluster
    runs), so a start cancelled half-way left worker processes that outlived the run. On a
    cancellation the start is finished, the cluster closed, and the cancellation raised."""
    import asyncio

    starting = asyncio.ensure_future(_await(cluster))
    watching = asyncio.ensure_future(_watch_start(cluster, names or [], emit, starting))
    try:
        started = await asyncio.shield(starting)
        with contextlib.suppress(Exception):
            await watching  # its last look, once the start ended
        return started
    except asyncio.CancelledError:
        while not starting.done():  # a second cancel while the start ends: still close what started
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([starting])
        if not starting.cancelled() and starting.exception() is None:
            closing = asyncio.ensure_future(cluster.close())
            while not closing.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([closing])
        raise


async def _await(cluster: Any) -> Any:
    return await cluster


class InProcessCluster(ClusterBackend):
    """Scheduler in this process, one Nanny-managed worker process per slot (this machine only)."""

    def __init__(self, spec: ClusterSpec) -> None:
        super().__init__(spec)
        if not spec.local_only:
            remote = sorted({w.host for w in spec.workers} | {spec.scheduler_host})
            raise AgiError(f"the in-process cluster runs on this machine only, but the settings name {', '.join(remote)}",
                           fix='use [cluster] backend = "ssh" for clusters that span hosts')
        self._cluster: Any = None
        self._security: Any = None

    def security(self) -> Any:
        return self._security

    def _make_security(self) -> Any:
        """This cluster's own credentials (`tls.make_credentials`), in memory only: the Nannies hand
        them to their worker processes; nothing is written. None with ``[cluster] tls = false``."""
        if not self.spec.tls:
            return None
        from .tls import make_credentials

        return make_credentials(self.spec.tls_names()).security()

    async def launch(self, emit: EventSink = ignore) -> None:
        from distributed import Nanny, Scheduler
        from distributed.deploy.spec import SpecCluster

        emit(Phase("cluster", f"starting an embedded Dask cluster of {len(self.spec.workers)} worker(s) on this machine"))
        spec = self.spec
        self._security = self._make_security()
        port = _dashboard_port(spec, emit)
        dashboard = dashboard_address(port, spec.scheduler.host)
        # The scheduler's HTTP server (/health, /info; the dashboard with bokeh) binds the dashboard's
        # port, or any free one: left to Dask, it takes 8787 whatever the settings say, and concurrent
        # runs warn that it is in use. An IPv6 address is given as (host, port), which Dask reads
        # where it cannot read "[::1]:port".
        http_port = port if dashboard else 0
        http = ([(spec.scheduler.host, http_port)] if spec.scheduler.is_ipv6
                else http_address(spec.scheduler.host, http_port or 0))
        scheduler = {"cls": Scheduler, "options": {"host": spec.scheduler.url_host, "port": spec.scheduler_port,
                                                   "protocol": spec.protocol, "security": self._security,
                                                   "dashboard": dashboard is not None, "dashboard_address": http}}
        threads = max(1, (os.cpu_count() or 1) // len(spec.workers))
        workers = {
            w.name: {"cls": Nanny, "options": {
                "name": w.name, "host": w.bind_host, "nthreads": w.nthreads or threads,
                "local_directory": spec.dask.local_directory, "resources": {"GPU": 1} if w.gpu else None,
                # the worker process dies with this one, even on SIGKILL
                "env": {**dict(w.env), MANAGER_PID_ENV: str(os.getpid())}, "preload": [PRELOAD],
                "silence_logs": 40, "dashboard": False, "security": self._security,
            }}
            for w in spec.workers
        }
        since = time.time()
        cluster = SpecCluster(workers=workers, scheduler=scheduler, asynchronous=True, silence_logs=40, name="agi",
                              security=self._security)
        try:
            self._cluster = await _started(cluster, emit, [w.name for w in spec.workers])
        except Exception:
            refused = reimport_refused(since)  # the workers stopped: the script runs AGI.run unguarded
            if refused is not None:
                raise refused from None  # Dask's own error says only that a nanny failed
            raise
        self.address = self._cluster.scheduler_address
        self.dashboard = self._cluster.dashboard_link if dashboard else None

    async def close(self) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await cluster.close()
