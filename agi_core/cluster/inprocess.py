"""`InProcessCluster`: the embedded default for a worker map that names only this machine.

The scheduler runs in this process; each slot is a worker process managed by a Nanny, named after
its slot. Nothing outlives the run: `close` stops it all.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .backend import ClusterBackend
from .spec import ClusterSpec, host_address

__all__ = ["InProcessCluster", "dashboard_address"]


def dashboard_address(port: int | None) -> str | None:
    """A dashboard only when asked for and when bokeh (which serves it) is installed."""
    if port is None or importlib.util.find_spec("bokeh") is None:
        return None
    return f":{port}"


class InProcessCluster(ClusterBackend):
    def __init__(self, spec: ClusterSpec, *, worker_env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.worker_env = worker_env or {}
        self._cluster: Any = None
        self._security: Any = None
        if spec.tls:
            from .tls import ensure_tls_files, security_for

            self._security = security_for(ensure_tls_files([host_address(spec.scheduler_host), *(w.address for w in spec.workers)]))

    def security(self) -> Any:
        return self._security

    async def start(self) -> None:
        import os

        from distributed import Nanny, Scheduler
        from distributed.deploy.spec import SpecCluster

        host = host_address(self.spec.scheduler_host)
        dashboard = dashboard_address(self.spec.dashboard_port)
        scheduler = {"cls": Scheduler, "options": {"host": host, "port": self.spec.scheduler_port, "protocol": self.spec.protocol,
                                                   "security": self._security,
                                                   "dashboard": dashboard is not None, "dashboard_address": dashboard}}
        workers = {
            w.name: {"cls": Nanny, "options": {
                "name": w.name, "host": w.address, "nthreads": w.nthreads or max(1, (os.cpu_count() or 1) // len(self.spec.workers)),
                "local_directory": self.spec.dask.local_directory, "resources": {"GPU": 1} if w.gpu else None,
                "env": self.worker_env, "silence_logs": 40, "dashboard": False, "security": self._security,
            }}
            for w in self.spec.workers
        }
        self._cluster = await SpecCluster(workers=workers, scheduler=scheduler, asynchronous=True, silence_logs=40, name="agi",
                                          security=self._security)
        self.address = self._cluster.scheduler_address
        self.dashboard = self._cluster.dashboard_link if dashboard else None

    async def close(self) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await cluster.close()
