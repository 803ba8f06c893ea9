"""`LaunchedCluster`: scheduler and workers as detached processes on their hosts.

Each process is started with ``setsid nohup`` (its PID is its process group) over the host's
session: SSH for remote hosts, a local shell for this machine. Remote hosts run the venv that
`agi install` built; this machine runs the manager's Python. Because the processes are detached,
the cluster can outlive this process (a warm cluster) and be stopped later from its state.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import AgiError
from ..hosts import is_local_host
from ..settings import ClusterSettings
from ..ssh import HostSession, SshError, open_session, shell_path
from .backend import ClusterBackend
from .client import config_yaml
from .inprocess import dashboard_address
from .spec import ClusterSpec, WorkerProcess, host_address

__all__ = ["LaunchedCluster", "LaunchedProcess"]


@dataclass(frozen=True)
class LaunchedProcess:
    host: str
    role: str  # "scheduler" or "worker"
    name: str
    pid: int  # on its host (= its process group)
    log: str


class LaunchedCluster(ClusterBackend):
    def __init__(self, spec: ClusterSpec, cluster: ClusterSettings, app: str, *, processes: Iterable[LaunchedProcess] = ()) -> None:
        self.spec = spec
        self.cluster = cluster
        self.app = app
        self.processes: list[LaunchedProcess] = list(processes)
        self.address = spec.scheduler_address
        self._sessions: dict[str, HostSession] = {}
        # SSH work fans out to at most this many hosts at once (hundreds of hosts stay manageable)
        self._fan_out = asyncio.Semaphore(cluster.install.concurrency)
        self._tls = None
        if spec.tls:
            from .tls import ensure_tls_files

            self._tls = ensure_tls_files([host_address(spec.scheduler_host), *(w.address for w in spec.workers)])

    def security(self) -> Any:
        if self._tls is None:
            return None
        from .tls import security_for

        return security_for(self._tls)

    def _tls_flags(self) -> str:
        if self._tls is None:
            return ""
        folder = f"{self.cluster.install.root.rstrip('/')}/tls"
        return (f" --tls-ca-file {shell_path(folder + '/ca.pem')} --tls-cert {shell_path(folder + '/cluster.pem')}"
                f" --tls-key {shell_path(folder + '/cluster.key')}")

    async def _upload_tls(self, session: HostSession) -> None:
        if self._tls is not None:
            folder = f"{self.cluster.install.root.rstrip('/')}/tls"
            for local, name in ((self._tls.ca, "ca.pem"), (self._tls.cert, "cluster.pem"), (self._tls.key, "cluster.key")):
                await session.put(local, f"{folder}/{name}")
            await session.run(f"chmod 600 {shell_path(folder + '/cluster.key')}", what="protecting the TLS key")

    # -- hosts ------------------------------------------------------------------------------

    async def _session(self, host: str) -> HostSession:
        if host not in self._sessions:
            async with self._fan_out:
                if host not in self._sessions:
                    self._sessions[host] = await open_session(host, self.cluster.ssh)
        return self._sessions[host]

    def _python(self, host: str) -> str:
        if is_local_host(host_address(host)):
            return shlex.quote(sys.executable)
        return shell_path(f"{self.cluster.install.venv_path(self.app)}/bin/python")

    def _log(self, name: str) -> str:
        return f"{self.cluster.install.root.rstrip('/')}/logs/{self.app}/{name}.log"

    def _config_file(self) -> str:
        return f"{self.cluster.install.root.rstrip('/')}/logs/{self.app}/dask.yaml"

    def _env(self) -> str:
        return f"DASK_CONFIG={shell_path(self._config_file())} PYTHONUNBUFFERED=1"

    async def _launch(self, host: str, role: str, name: str, command: str) -> LaunchedProcess:
        session = await self._session(host)
        async with self._fan_out:
            return await self._launch_on(session, host, role, name, command)

    async def _launch_on(self, session: HostSession, host: str, role: str, name: str, command: str) -> LaunchedProcess:
        log = self._log(name)
        folder = log.rsplit("/", 1)[0]
        # `cd … || exit` and `env VAR=…` avoid the two traps of backgrounding over SSH (see test-rig.md)
        script = (f"mkdir -p {shell_path(folder)} && cd {shell_path(folder)} || exit 1; "
                  f"setsid nohup env {self._env()} {command} > {shell_path(log)} 2>&1 < /dev/null & echo $!")
        result = await session.run(script, what=f"starting the {role} {name}", timeout=30)
        process = LaunchedProcess(host, role, name, int(result.stdout.strip().splitlines()[-1]), log)
        self.processes.append(process)
        return process

    async def tail(self, process: LaunchedProcess, lines: int = 15) -> str:
        try:
            session = await self._session(process.host)
            return (await session.run(f"tail -n {lines} {shell_path(process.log)}", check=False, timeout=10)).stdout
        except SshError as exc:
            return f"(cannot read the log: {exc.message})"

    # -- start / stop -----------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        spec = self.spec
        hosts = {spec.scheduler_host, *(w.host for w in spec.workers)}
        sessions = await asyncio.gather(*(self._session(host) for host in hosts))  # fail early, naming unreachable hosts
        config = config_yaml(spec)
        await asyncio.gather(*(session.write_text(self._config_file(), config) for session in sessions))
        await asyncio.gather(*(self._upload_tls(session) for session in sessions))
        dashboard = dashboard_address(spec.dashboard_port)
        # The scheduler writes its real address (port 0 = any free port) to this file.
        scheduler_file = self._log("scheduler").removesuffix(".log") + ".json"
        session = await self._session(spec.scheduler_host)
        await session.run(f"rm -f {shell_path(scheduler_file)}", what="clearing the scheduler file")
        scheduler = await self._launch(
            spec.scheduler_host, "scheduler", "scheduler",
            f"{self._python(spec.scheduler_host)} -m distributed.cli.dask_scheduler --host {host_address(spec.scheduler_host)} "
            f"--port {spec.scheduler_port} --scheduler-file {shell_path(scheduler_file)} --protocol {spec.protocol}{self._tls_flags()} "
            + (f"--dashboard-address {dashboard}" if dashboard else "--no-dashboard"),
        )
        self.address = await self._wait_for_scheduler(scheduler, scheduler_file)
        self.dashboard = f"http://{host_address(spec.scheduler_host)}:{spec.dashboard_port}/status" if dashboard else None
        await asyncio.gather(*(self._launch(w.host, "worker", w.name, self._worker_command(w)) for w in spec.workers))

    def _worker_command(self, worker: WorkerProcess) -> str:
        dask = self.spec.dask
        count = sum(1 for w in self.spec.workers if w.host == worker.host)
        threads = str(worker.nthreads) if worker.nthreads else f"$(( $(nproc) / {count} > 0 ? $(nproc) / {count} : 1 ))"
        flags = [f"--name {shlex.quote(worker.name)}", f"--host {worker.address}", f"--nthreads {threads}", "--nworkers 1",
                 f"--local-directory {shell_path(dask.local_directory)}", "--death-timeout 60", "--no-dashboard"]
        if dask.worker_ports:
            flags.append(f"--worker-port {dask.worker_ports}")
        if dask.nanny_ports:
            flags.append(f"--nanny-port {dask.nanny_ports}")
        if worker.gpu:
            flags.append("--resources GPU=1")
        return f"{self._python(worker.host)} -m distributed.cli.dask_worker {self.address} " + " ".join(flags) + self._tls_flags()

    async def _wait_for_scheduler(self, process: LaunchedProcess, scheduler_file: str) -> str:
        """The scheduler's address, once it has written its file and its port accepts connections."""
        import json

        session = await self._session(process.host)
        deadline = time.monotonic() + self.spec.dask.start_timeout
        while time.monotonic() < deadline:
            text = await session.read_text(scheduler_file)
            if text:
                address = json.loads(text)["address"]
                host, port = address.split("://", 1)[1].rsplit(":", 1)
                try:  # the port accepts connections (a TLS handshake is the client's job)
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
                except (OSError, asyncio.TimeoutError):
                    pass
                else:
                    writer.close()
                    return address
            alive = await session.run(f"kill -0 {process.pid}", check=False, timeout=10)
            if not alive.ok:
                raise AgiError(f"the scheduler on {process.host} exited at start:\n{await self.tail(process)}",
                               fix="see its log above (a port already in use? set [cluster.dask] scheduler_port)")
            await asyncio.sleep(0.1)
        raise AgiError(f"the scheduler on {process.host} was not reachable within {self.spec.dask.start_timeout:g} s:\n"
                       f"{await self.tail(process)}", fix="see its log above (a firewall between here and its port?)")

    async def missing_workers_report(self, joined: set[str]) -> str:
        """For the workers that never joined: their host and the end of their log."""
        parts = []
        for process in self.processes:
            if process.role == "worker" and process.name not in joined:
                parts.append(f"--- {process.name} on {process.host} ({process.log}):\n{(await self.tail(process)).rstrip()}")
        return "\n".join(parts)

    async def close(self) -> None:
        """Stop every process by its group: SIGTERM, then SIGKILL for what is left."""
        by_host: dict[str, list[int]] = {}
        for process in self.processes:
            by_host.setdefault(process.host, []).append(process.pid)
        self.processes = []

        async def stop(host: str, pids: list[int]) -> None:
            groups = " ".join(f"-{pid}" for pid in pids)
            try:
                session = await self._session(host)
                await session.run(f"kill -TERM -- {groups} 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do "
                                  f"kill -0 -- {groups} 2>/dev/null || exit 0; sleep 0.2; done; kill -KILL -- {groups} 2>/dev/null; true",
                                  check=False, timeout=30)
            except Exception:  # noqa: BLE001 - a host that is gone took its processes with it
                pass

        await asyncio.gather(*(stop(host, pids) for host, pids in by_host.items()))
        sessions, self._sessions = self._sessions, {}
        await asyncio.gather(*(session.close() for session in sessions.values()), return_exceptions=True)

    # -- warm clusters ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"address": self.address, "dashboard": self.dashboard, "processes": [asdict(p) for p in self.processes]}

    @classmethod
    def from_state(cls, state: dict[str, Any], spec: ClusterSpec, cluster: ClusterSettings, app: str) -> LaunchedCluster:
        launched = cls(spec, cluster, app, processes=[LaunchedProcess(**p) for p in state.get("processes", [])])
        launched.address = state.get("address", spec.scheduler_address)
        launched.dashboard = state.get("dashboard")
        return launched
