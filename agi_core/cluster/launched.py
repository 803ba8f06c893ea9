"""`LaunchedCluster` (backend ``launched``): scheduler and workers as detached processes on their hosts.

Remote hosts run the venv that `agi install` built; this machine runs the manager's Python.
Every process reads one ``dask.yaml`` (the manager's Dask settings) and, with TLS (the default),
the cluster's own credentials (`tls`), both uploaded first. Because the processes are detached (`detached`), the cluster can
outlive this process (a warm cluster) and be stopped later from its recorded state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AgiError
from ..events import EventSink, HostStep, Notice, ignore
from ..hosts import HostAddress
from ..ssh import HostSession, shell_path
from .backend import ClusterBackend, ProcessRecord
from .cache_key import upload_key, worker_env
from .client import config_yaml
from .detached import DetachedProcesses
from .inprocess import dashboard_address, http_address
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
        self._credentials = credentials if spec.tls else None
        self._security: Any = None
        self._tls_id: str | None = None  # the credentials' folder name (`tls.cluster_id`), once made
        self._tls_saved: Path | None = None  # a warm cluster's copy on the manager (`tls.manager_folder`)
        self._tls_hosts: set[str] = set()  # the hosts (worker-map keys) this process wrote them to
        #: worker hosts unreachable at the start (host -> why), left out because the others were
        #: enough (`ClusterSpec.min_workers`); their workers start when they come back (`tend`)
        self._unreached: dict[str, str] = {}
        self._retry: asyncio.Task[None] | None = None
        self._next_try = 0.0

    def started(self) -> tuple[ProcessRecord, ...]:
        return tuple(self.hosts.processes)

    def security(self) -> Any:
        if self._credentials is None and self._tls_saved is not None:  # attached: read when first needed
            from .tls import ClusterCredentials

            self._credentials = ClusterCredentials.load(self._tls_saved, cluster=f"the warm cluster of '{self.spec.app}'")
        if self._credentials is None:
            return None
        if self._security is None:
            self._security = self._credentials.security()
        return self._security

    # -- where things are on a host ---------------------------------------------------------

    def _python(self, host: str) -> str:
        if HostAddress.parse(host).is_local:
            return shlex.quote(self.spec.local_python or sys.executable)
        return shell_path(f"{self.spec.venv}/bin/python")

    def _log(self, name: str) -> str:
        return f"{self.spec.root}/logs/{self.spec.app}/{name}.log"

    def _config_file(self) -> str:
        return f"{self.spec.root}/logs/{self.spec.app}/dask.yaml"

    def _tls_folder(self) -> str:
        """This cluster's credentials on each host: ``<root>/tls/<cluster id>``."""
        return f"{self.spec.root}/tls/{self._tls_id}"

    def _tls_flags(self) -> str:
        if self._credentials is None:
            return ""
        folder = self._tls_folder()
        return (f" --tls-ca-file {shell_path(folder + '/ca.pem')} --tls-cert {shell_path(folder + '/cluster.pem')}"
                f" --tls-key {shell_path(folder + '/cluster.key')}")

    def _prepare_tls(self) -> None:
        """Make this cluster's credentials (unless given) and name their folder; a warm cluster
        keeps a copy on the manager for the processes that attach to it later."""
        from .tls import cluster_id, make_credentials, manager_folder

        if not self.spec.tls:
            return
        if self._credentials is None:
            self._credentials = make_credentials(self.spec.tls_names())
        self._tls_id = cluster_id(self.spec.app, warm=not self.tethered)
        if not self.tethered:
            self._tls_saved = manager_folder(self._tls_id)
            self._credentials.save(self._tls_saved)

    def _tls_cleanup(self) -> str:
        """The shell command that deletes this cluster's credentials on a host ("" without TLS)."""
        return f"rm -rf {shell_path(self._tls_folder())}" if self._tls_id else ""

    async def _upload_tls(self, session: HostSession) -> None:
        """The credentials into a 0700 folder on the host, files 0600 from their first byte (umask),
        sent on standard input (never on a command line, which other users can read)."""
        if self._credentials is None:
            return
        top, folder = shell_path(f"{self.spec.root}/tls"), shell_path(self._tls_folder())
        prepare = f"mkdir -p {top} && umask 077 && mkdir -p {folder} && chmod 700 {top} {folder} && "
        for name, text in self._credentials.texts().items():
            await session.run(f"{prepare}umask 077 && cat > {folder}/{name}", input=text,
                              what=f"writing the cluster's TLS credentials ({name})")
            prepare = ""

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
        if self._credentials is not None:
            self._tls_hosts |= set(sessions)
        await asyncio.gather(*(self._upload_tls(session) for session in sessions.values()))
        worker_hosts = {w.host for w in spec.workers}
        await asyncio.gather(*(upload_key(session, host, spec.root) for host, session in sessions.items() if host in worker_hosts))

    async def launch(self, emit: EventSink = ignore) -> None:
        spec = self.spec
        hosts = sorted({spec.scheduler_host, *(w.host for w in spec.workers)})
        self._prepare_tls()
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
        scheduler = await self._launch(
            spec.scheduler_host, "scheduler", "scheduler",
            f"{self._python(spec.scheduler_host)} -m distributed.cli.dask_scheduler "
            f"--host {shlex.quote(spec.scheduler.url_host)} --port {spec.scheduler_port} "
            f"--scheduler-file {shell_path(scheduler_file)} --protocol {spec.protocol}{self._tls_flags()} "
            + f"--dashboard-address {shlex.quote(http)}" + ("" if dashboard else " --no-dashboard"),
        )
        self.address = await self._wait_for_scheduler(scheduler, scheduler_file)
        self.dashboard = f"http://{spec.scheduler.url_host}:{spec.dashboard_port}/status" if dashboard else None
        for host, workers in spec.hosts().items():
            if host in sessions:
                emit(HostStep(host, f"starting {len(workers)} worker(s)"))
        await asyncio.gather(*(self._launch_worker(w) for w in spec.workers if w.host in sessions))
        if self.tethered:
            await self.hosts.tether_all(cleanup=self._tls_cleanup())  # the credentials go too, even on SIGKILL
        for host in sessions:
            emit(HostStep(host, "started", done=True))

    async def _launch_worker(self, worker: WorkerProcess) -> ProcessRecord:
        return await self._launch(worker.host, "worker", worker.name, self._worker_command(worker),
                                  (*worker.env, *worker_env(worker.host, self.spec.root)))

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
                    await self.hosts.tether_all(cleanup=self._tls_cleanup(), hosts=[host])
            except Exception as exc:  # noqa: BLE001 - the run goes on without it, and says why
                self._unreached[host] = f"reachable again, but its workers did not start: {exc}"
                emit(Notice(f"{host}: reachable again, but its workers did not start ({exc}); the run goes on without them",
                            level="warning"))
                continue
            del self._unreached[host]
            emit(HostStep(host, "started", done=True))

    def _worker_command(self, worker: WorkerProcess) -> str:
        dask = self.spec.dask
        count = sum(1 for w in self.spec.workers if w.host == worker.host)
        threads = str(worker.nthreads) if worker.nthreads else f"$(( $(nproc) / {count} > 0 ? $(nproc) / {count} : 1 ))"
        flags = [f"--name {shlex.quote(worker.name)}", f"--host {shlex.quote(worker.bind_host)}", f"--nthreads {threads}",
                 "--nworkers 1", f"--local-directory {shell_path(dask.local_directory)}", "--death-timeout 60", "--no-dashboard",
                 f"--dashboard-address {shlex.quote(http_address(worker.address, 0))}"]  # its HTTP port: its own interface
        if dask.worker_ports:
            flags.append(f"--worker-port {dask.worker_ports}")
        if dask.nanny_ports:
            flags.append(f"--nanny-port {dask.nanny_ports}")
        if worker.gpu:
            flags.append("--resources GPU=1")
        return f"{self._python(worker.host)} -m distributed.cli.dask_worker {self.address} " + " ".join(flags) + self._tls_flags()

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
        from .tls import remove_credentials

        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
        cleanup = self._tls_cleanup()
        running = {process.host for process in self.hosts.processes}
        for host in sorted(self._tls_hosts - running):  # written there, but nothing started: a failed start
            with contextlib.suppress(Exception):
                await (await self.hosts.session(host)).run(cleanup, check=False, timeout=30)
        await self.hosts.stop_all(cleanup=cleanup)
        if self._tls_saved is not None:
            remove_credentials(self._tls_saved)

    # -- warm clusters ----------------------------------------------------------------------

    @classmethod
    def warm(cls, spec: ClusterSpec) -> LaunchedCluster:
        return cls(spec, tethered=False)

    def state(self) -> dict[str, Any]:
        return {"address": self.address, "dashboard": self.dashboard, "processes": [asdict(p) for p in self.hosts.processes],
                "tls": None if self._tls_saved is None else {"id": self._tls_id, "folder": str(self._tls_saved)}}

    @classmethod
    def attach(cls, spec: ClusterSpec, state: dict[str, Any]) -> LaunchedCluster:
        launched = cls(spec, tethered=False)
        launched.hosts.processes = [ProcessRecord(**p) for p in state.get("processes", [])]
        launched.address = state.get("address", spec.scheduler_address)
        launched.dashboard = state.get("dashboard")
        tls = state.get("tls")
        if spec.tls and tls:  # `security` reads them: `agi cluster down` works without them
            launched._tls_id, launched._tls_saved = tls["id"], Path(tls["folder"])
        return launched
