"""`LaunchedCluster` (backend ``launched``): scheduler and workers as detached processes on their hosts.

Remote hosts run the venv that `agi install` built; this machine runs the manager's Python.
Every process reads one ``dask.yaml`` (the manager's Dask settings) and, with TLS, the cluster's
certificate, both uploaded first. Because the processes are detached (`detached`), the cluster can
outlive this process (a warm cluster) and be stopped later from its recorded state.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from dataclasses import asdict
from typing import Any

from ..errors import AgiError
from ..events import EventSink, HostStep, ignore
from ..hosts import HostAddress
from ..ssh import HostSession, shell_path
from .backend import ClusterBackend, ProcessRecord
from .cache_key import upload_key, worker_env
from .client import config_yaml
from .detached import DetachedProcesses
from .inprocess import dashboard_address, http_address
from .spec import ClusterSpec, WorkerProcess

__all__ = ["LaunchedCluster"]


class LaunchedCluster(ClusterBackend):
    """Detached ``dask scheduler`` and ``dask worker`` processes, started over each host's session."""

    def __init__(self, spec: ClusterSpec, *, tethered: bool = True) -> None:
        """``tethered``: the processes stop when this process dies (a cluster for one run); a
        warm cluster is not tethered."""
        super().__init__(spec)
        self.tethered = tethered
        if not spec.app:
            raise AgiError("a launched cluster needs the app's name (its venv on each host)",
                           fix="build the spec with cluster_spec(..., app=NAME)")
        self.address = spec.scheduler_address
        self.hosts = DetachedProcesses(spec.ssh, spec.fan_out)
        self._tls = None
        if spec.tls:
            from .tls import ensure_tls_files

            self._tls = ensure_tls_files(spec.tls_names())

    def started(self) -> tuple[ProcessRecord, ...]:
        return tuple(self.hosts.processes)

    def security(self) -> Any:
        if self._tls is None:
            return None
        from .tls import security_for

        return security_for(self._tls)

    # -- where things are on a host ---------------------------------------------------------

    def _python(self, host: str) -> str:
        if HostAddress.parse(host).is_local:
            return shlex.quote(self.spec.local_python or sys.executable)
        return shell_path(f"{self.spec.venv}/bin/python")

    def _log(self, name: str) -> str:
        return f"{self.spec.root}/logs/{self.spec.app}/{name}.log"

    def _config_file(self) -> str:
        return f"{self.spec.root}/logs/{self.spec.app}/dask.yaml"

    def _tls_flags(self) -> str:
        if self._tls is None:
            return ""
        folder = f"{self.spec.root}/tls"
        return (f" --tls-ca-file {shell_path(folder + '/ca.pem')} --tls-cert {shell_path(folder + '/cluster.pem')}"
                f" --tls-key {shell_path(folder + '/cluster.key')}")

    async def _upload_tls(self, session: HostSession) -> None:
        if self._tls is not None:
            folder = f"{self.spec.root}/tls"
            for local, name in ((self._tls.ca, "ca.pem"), (self._tls.cert, "cluster.pem"), (self._tls.key, "cluster.key")):
                await session.put(local, f"{folder}/{name}")
            await session.run(f"chmod 600 {shell_path(folder + '/cluster.key')}", what="protecting the TLS key")

    async def _launch(self, host: str, role: str, name: str, command: str, env: tuple[tuple[str, str], ...] = ()) -> ProcessRecord:
        """Start one process detached; ``env``: its own variables (a worker's GPU, the host's `env` setting)."""
        variables = f"DASK_CONFIG={shell_path(self._config_file())} PYTHONUNBUFFERED=1"
        variables += "".join(f" {key}={shlex.quote(value)}" for key, value in env)
        return await self.hosts.launch(host, role, name, command, log=self._log(name), env=variables)

    # -- start / stop -----------------------------------------------------------------------

    async def start(self, emit: EventSink = ignore) -> None:
        try:
            await self._start(emit)
        except BaseException:
            await self.close()
            raise

    async def _start(self, emit: EventSink) -> None:
        spec = self.spec
        hosts = {spec.scheduler_host, *(w.host for w in spec.workers)}
        for host in hosts:
            emit(HostStep(host, "connecting"))
        sessions = await asyncio.gather(*(self.hosts.session(host) for host in hosts))  # fail early, naming unreachable hosts
        config = config_yaml(spec)
        await asyncio.gather(*(session.write_text(self._config_file(), config) for session in sessions))
        await asyncio.gather(*(self._upload_tls(session) for session in sessions))
        by_host = dict(zip(hosts, sessions, strict=True))  # the cache key: to each worker host (`cache_key`)
        await asyncio.gather(*(upload_key(by_host[host], host, spec.root) for host in {w.host for w in spec.workers}))
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
            emit(HostStep(host, f"starting {len(workers)} worker(s)"))
        await asyncio.gather(*(self._launch(w.host, "worker", w.name, self._worker_command(w), (*w.env, *worker_env(w.host, spec.root)))
                               for w in spec.workers))
        if self.tethered:
            await self.hosts.tether_all()
        for host in hosts:
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
        """For the workers that never joined: their host and the end of their log."""
        parts = []
        for process in self.hosts.processes:
            if process.role == "worker" and process.name not in joined:
                log = (await self.hosts.tail(process)).rstrip()
                parts.append(f"--- {process.name} on {process.host} ({process.log}):\n{log}")
        return "\n".join(parts)

    async def close(self) -> None:
        """Stop every process by its group: SIGTERM, then SIGKILL for what is left."""
        await self.hosts.stop_all()

    # -- warm clusters ----------------------------------------------------------------------

    @classmethod
    def warm(cls, spec: ClusterSpec) -> LaunchedCluster:
        return cls(spec, tethered=False)

    def state(self) -> dict[str, Any]:
        return {"address": self.address, "dashboard": self.dashboard, "processes": [asdict(p) for p in self.hosts.processes]}

    @classmethod
    def attach(cls, spec: ClusterSpec, state: dict[str, Any]) -> LaunchedCluster:
        launched = cls(spec, tethered=False)
        launched.hosts.processes = [ProcessRecord(**p) for p in state.get("processes", [])]
        launched.address = state.get("address", spec.scheduler_address)
        launched.dashboard = state.get("dashboard")
        return launched
