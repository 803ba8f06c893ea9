"""`LaunchedCluster` (backend ``launched``): scheduler and workers as detached processes on their hosts.

Remote hosts run the venv that `agi install` built; this machine runs the manager's Python.
Every process reads one ``dask.yaml`` (the manager's Dask settings) and, with TLS (the default),
the cluster's own credentials (`launched_tls`), both uploaded first. Because the processes are
detached (`detached`), the cluster can outlive this process (a warm cluster) and be stopped later
from its recorded state. This module is their life cycle: which hosts, in which order, what a
host that comes back late gets; their command lines are `launched_commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..base.errors import AgiError
from ..base.events import EventSink, HostStep, Notice, ignore
from ..ssh import HostSession, shell_path
from .backend import ClusterBackend, ProcessRecord
from .cache_key import upload_key, worker_env
from .client import config_yaml
from .detached import DetachedProcesses
from .inprocess import dashboard_address, http_address
from .launched_commands import scheduler_command, worker_command
from .launched_tls import HostCredentials
from .spec import ClusterSpec, WorkerProcess

if TYPE_CHECKING:
    from .tls import ClusterCredentials

__all__ = ["LaunchedCluster"]

#: how often a run tries again the worker hosts it could not reach at its start (`LaunchedCluster.tend`)
RETRY_S = 5.0


class LaunchedCluster(ClusterBackend):
    """Detached ``dask scheduler`` and ``dask worker`` processes, started over each host's session."""

    def __init__(self, spec: ClusterSpec, *, tethered: bool = True, credentials: ClusterCredentials | None = None) -> None:
        """``tethered``: the processes stop when this process dies (a cluster for one run); a
        warm cluster is not tethered. ``credentials``: the cluster's TLS credentials when its
        owner made them (a Slurm cluster's scheduler); by default `start` makes fresh ones."""
        super().__init__(spec)
        self.tethered = tethered
        if not spec.app:
            raise AgiError("a launched cluster needs the app's name (its venv on each host)",
                           fix="build the spec with cluster_spec(..., app=NAME)")
        self.address = spec.scheduler_address
        self.hosts = DetachedProcesses(spec.ssh, spec.fan_out)
        self.tls = HostCredentials(spec, credentials, tethered=tethered)
        #: worker hosts unreachable at the start (host -> why), left out because the others were
        #: enough (`ClusterSpec.min_workers`); their workers start when they come back (`tend`)
        self._unreached: dict[str, str] = {}
        self._retry: asyncio.Task[None] | None = None
        self._next_try = 0.0

    def started(self) -> tuple[ProcessRecord, ...]:
        return tuple(self.hosts.processes)

    def security(self) -> Any:
        return self.tls.security()

    # -- where things are on a host ---------------------------------------------------------

    def _log(self, name: str) -> str:
        return f"{self.spec.root}/logs/{self.spec.app}/{name}.log"

    def _config_file(self) -> str:
        return f"{self.spec.root}/logs/{self.spec.app}/dask.yaml"

    async def _launch(self, host: str, role: str, name: str, command: str, env: tuple[tuple[str, str], ...] = ()) -> ProcessRecord:
        """Start one process detached; ``env``: its own variables (a worker's GPU, the host's `env` setting)."""
        variables = f"DASK_CONFIG={shell_path(self._config_file())} PYTHONUNBUFFERED=1"
        variables += "".join(f" {key}={shlex.quote(value)}" for key, value in env)
        return await self.hosts.launch(host, role, name, command, log=self._log(name), env=variables)

    # -- start / stop -----------------------------------------------------------------------

    async def _reach(self, hosts: list[str], emit: EventSink) -> dict[str, HostSession]:
        """A session to each host (fail early, naming an unreachable one), except that a worker
        host that cannot be reached is left out, said, and tried again later (`tend`) when the
        workers of the others are enough to start (`ClusterSpec.min_workers`)."""
        found = await asyncio.gather(*(self.hosts.session(host) for host in hosts), return_exceptions=True)
        sessions = {host: s for host, s in zip(hosts, found, strict=True) if not isinstance(s, BaseException)}
        failed = {host: s for host, s in zip(hosts, found, strict=True) if isinstance(s, BaseException)}
        for exc in failed.values():
            if not isinstance(exc, Exception):
                raise exc  # a Ctrl-C, not a host
        spec = self.spec
        usable = sum(1 for w in spec.workers if w.host in sessions)
        if failed and (spec.scheduler_host in failed or usable < (spec.min_workers or len(spec.workers))):
            raise next(iter(failed.values()))
        for host, exc in failed.items():
            self._unreached[host] = str(exc)
            emit(HostStep(host, f"unreachable, left out for now ({exc}); its workers start if it comes back during the run",
                          done=True, failed=True))
        return sessions

    async def _prepare(self, sessions: dict[str, HostSession]) -> None:
        """What every process reads, written to each host: the Dask settings, the TLS
        credentials, and the cache key to each worker host (`cache_key`)."""
        spec = self.spec
        config = config_yaml(spec)
        await asyncio.gather(*(session.write_text(self._config_file(), config) for session in sessions.values()))
        await self.tls.write(sessions)
        worker_hosts = {w.host for w in spec.workers}
        await asyncio.gather(*(upload_key(session, host, spec.root) for host, session in sessions.items() if host in worker_hosts))

    async def launch(self, emit: EventSink = ignore) -> None:
        spec = self.spec
        hosts = sorted({spec.scheduler_host, *(w.host for w in spec.workers)})
        self.tls.prepare()
        for host in hosts:
            emit(HostStep(host, "connecting"))
        sessions = await self._reach(hosts, emit)
        await self._prepare(sessions)
        dashboard = dashboard_address(spec.dashboard_port, spec.scheduler.host)
        # The scheduler's HTTP server (/health, /info, the dashboard when bokeh is there) binds its own interface.
        http = dashboard or http_address(spec.scheduler.host, 0)
        # The scheduler writes its real address (port 0 = any free port) to this file.
        scheduler_file = self._log("scheduler").removesuffix(".log") + ".json"
        session = await self.hosts.session(spec.scheduler_host)
        emit(HostStep(spec.scheduler_host, "starting the scheduler"))
        await session.run(f"rm -f {shell_path(scheduler_file)}", what="clearing the scheduler file")
        command = scheduler_command(spec, scheduler_file, http, dashboard=bool(dashboard), tls=self.tls.flags())
        scheduler = await self._launch(spec.scheduler_host, "scheduler", "scheduler", command)
        self.address = await self._wait_for_scheduler(scheduler, scheduler_file)
        self.dashboard = f"http://{spec.scheduler.url_host}:{spec.dashboard_port}/status" if dashboard else None
        for host, workers in spec.hosts().items():
            if host in sessions:
                emit(HostStep(host, f"starting {len(workers)} worker(s)"))
        await asyncio.gather(*(self._launch_worker(w) for w in spec.workers if w.host in sessions))
        if self.tethered:
            await self.hosts.tether_all(cleanup=self.tls.cleanup())  # the credentials go too, even on SIGKILL
        for host in sessions:
            emit(HostStep(host, "started", done=True))

    async def _launch_worker(self, worker: WorkerProcess) -> ProcessRecord:
        command = worker_command(self.spec, worker, self.address, self.tls.flags())
        env = (*worker.env, *worker_env(worker.host, self.spec.root))
        return await self._launch(worker.host, "worker", worker.name, command, env)

    async def tend(self, *, work_left: bool, emit: EventSink = ignore) -> None:
        """While work is left, try again every `RETRY_S` the worker hosts unreachable at the start:
        one that is back gets its workers, which join the run late and take work (in the
        background: an unreachable host may take the SSH connect timeout to say so)."""
        if not self._unreached or not work_left or (self._retry is not None and not self._retry.done()):
            return
        if time.monotonic() < self._next_try:
            return
        self._next_try = time.monotonic() + RETRY_S
        self._retry = asyncio.ensure_future(self._bring_back(sorted(self._unreached), emit))

    async def _bring_back(self, hosts: list[str], emit: EventSink) -> None:
        for host in hosts:
            try:
                session = await self.hosts.session(host)
            except Exception as exc:  # noqa: BLE001 - still down: said when the run ends (`missing_workers_report`)
                self._unreached[host] = str(exc)
                continue
            workers = [w for w in self.spec.workers if w.host == host]
            try:
                await self._prepare({host: session})
                emit(HostStep(host, f"reachable again: starting {len(workers)} worker(s)"))
                await asyncio.gather(*(self._launch_worker(w) for w in workers))
                if self.tethered:
                    await self.hosts.tether_all(cleanup=self.tls.cleanup(), hosts=[host])
            except Exception as exc:  # noqa: BLE001 - the run goes on without it, and says why
                self._unreached[host] = f"reachable again, but its workers did not start: {exc}"
                emit(Notice(f"{host}: reachable again, but its workers did not start ({exc}); the run goes on without them",
                            level="warning"))
                continue
            del self._unreached[host]
            emit(HostStep(host, "started", done=True))

    async def _wait_for_scheduler(self, process: ProcessRecord, scheduler_file: str) -> str:
        """The scheduler's address, once it has written its file and its port accepts connections."""
        from distributed.comm import get_address_host_port

        session = await self.hosts.session(process.host)
        deadline = time.monotonic() + self.spec.dask.start_timeout
        while time.monotonic() < deadline:
            text = await session.read_text(scheduler_file)
            if text:
                address = json.loads(text)["address"]
                host, port = get_address_host_port(address)
                try:  # the port accepts connections (a TLS handshake is the client's job)
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
                except (OSError, asyncio.TimeoutError):
                    pass
                else:
                    writer.close()
                    return address
            if not await self.hosts.alive(process):
                raise AgiError(f"the scheduler on {process.host} exited at start:\n{await self.hosts.tail(process)}",
                               fix="see its log above (a port already in use? set [cluster.dask] scheduler_port)")
            await asyncio.sleep(0.1)
        raise AgiError(f"the scheduler on {process.host} was not reachable within {self.spec.dask.start_timeout:g} s:\n"
                       f"{await self.hosts.tail(process)}", fix="see its log above (a firewall between here and its port?)")

    async def missing_workers_report(self, joined: set[str]) -> str:
        """For the workers that never joined: their host and the end of their log (or why their
        host could not be reached)."""
        parts = [f"--- {w.name} on {w.host}: not started: the host could not be reached ({self._unreached[w.host]})"
                 for w in self.spec.workers if w.host in self._unreached and w.name not in joined]
        for process in self.hosts.processes:
            if process.role == "worker" and process.name not in joined:
                log = (await self.hosts.tail(process)).rstrip()
                parts.append(f"--- {process.name} on {process.host} ({process.log}):\n{log}")
        return "\n".join(parts)

    async def close(self) -> None:
        """Stop every process by its group: SIGTERM, then SIGKILL for what is left; delete the
        cluster's credentials on its hosts (and a warm cluster's on the manager)."""
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
        cleanup = self.tls.cleanup()
        running = {process.host for process in self.hosts.processes}
        for host in sorted(self.tls.hosts - running):  # written there, but nothing started: a failed start
            with contextlib.suppress(Exception):
                await (await self.hosts.session(host)).run(cleanup, check=False, timeout=30)
        await self.hosts.stop_all(cleanup=cleanup)
        self.tls.forget_saved()

    # -- warm clusters ----------------------------------------------------------------------

    @classmethod
    def warm(cls, spec: ClusterSpec) -> LaunchedCluster:
        return cls(spec, tethered=False)

    def state(self) -> dict[str, Any]:
        return {"address": self.address, "dashboard": self.dashboard, "processes": [asdict(p) for p in self.hosts.processes],
                "tls": self.tls.state()}

    @classmethod
    def attach(cls, spec: ClusterSpec, state: dict[str, Any]) -> LaunchedCluster:
        launched = cls(spec, tethered=False)
        launched.hosts.processes = [ProcessRecord(**p) for p in state.get("processes", [])]
        launched.address = state.get("address", spec.scheduler_address)
        launched.dashboard = state.get("dashboard")
        launched.tls.found(state.get("tls"))
        return launched
