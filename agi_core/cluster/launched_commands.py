"""The command lines of a launched cluster's processes: which Python, and the ``dask`` flags.

Apart from `launched` (which runs them over each host's session) because they are strings made
from the spec alone: a test reads them without a host, and the flags that decide a worker's
threads, ports, GPU resource and TLS are in one place.
"""

from __future__ import annotations

import shlex
import sys

from ..base.hosts import HostAddress
from ..ssh import shell_path
from .inprocess import http_address
from .spec import ClusterSpec, WorkerProcess

__all__ = ["host_python", "scheduler_command", "worker_command"]


def host_python(spec: ClusterSpec, host: str) -> str:
    """The Python on ``host``: the venv `agi install` built there; the manager's own on this machine."""
    if HostAddress.parse(host).is_local:
        return shlex.quote(spec.local_python or sys.executable)
    return shell_path(f"{spec.venv}/bin/python")


def scheduler_command(spec: ClusterSpec, scheduler_file: str, http: str, *, dashboard: bool, tls: str) -> str:
    """``dask scheduler`` on ``spec.scheduler_host``, writing its real address to ``scheduler_file``;
    ``http``: its HTTP server's address (the dashboard's when ``dashboard``); ``tls``: its TLS flags."""
    return (f"{host_python(spec, spec.scheduler_host)} -m distributed.cli.dask_scheduler "
            f"--host {shlex.quote(spec.scheduler.url_host)} --port {spec.scheduler_port} "
            f"--scheduler-file {shell_path(scheduler_file)} --protocol {spec.protocol}{tls} "
            + f"--dashboard-address {shlex.quote(http)}" + ("" if dashboard else " --no-dashboard"))


def worker_command(spec: ClusterSpec, worker: WorkerProcess, address: str, tls: str) -> str:
    """``dask worker`` for ``worker``, joining the scheduler at ``address``; ``tls``: its TLS flags.
    Without a thread count, the host's cores are shared among its workers (at least one each)."""
    dask = spec.dask
    count = sum(1 for w in spec.workers if w.host == worker.host)
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
    return f"{host_python(spec, worker.host)} -m distributed.cli.dask_worker {address} " + " ".join(flags) + tls
