"""A real dask-gateway-server on this machine, for the Gateway backend's tests.

The server, its schedulers and its workers run in a venv of their own (the "image"): Dask, the
Gateway packages and uv, at the manager's Dask versions, but neither agi_core nor any app: what
a run needs there is shipped through Dask (`agi_core.cluster.env_shipping`), as on Kubernetes.
Local backend (`UnsafeLocalBackend`: same user, no sudo), `SimpleAuthenticator` (any user name,
one password), loopback, a free port. /work/shared/reference/gateway.md has the measured recipe.

``GatewayServer.up(folder)`` builds the venv (uv, from its cache: about 2 s when warm), starts the
server and waits for ``/api/health``; ``stop`` ends it (SIGTERM, then SIGKILL, by its PID) and
with it every cluster it started.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PASSWORD", "GatewayServer", "build_image"]

#: the SimpleAuthenticator's password (any user name)
PASSWORD = "gw-test-secret"
#: the packages whose versions the cluster's version check compares: the image gets the manager's
MATCHED = ("dask", "distributed", "cloudpickle", "msgpack")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_image(venv: Path) -> Path:
    """The workers' image: a venv with dask-gateway-server[local], dask-gateway and uv, with the
    manager's versions of `MATCHED`. Returns its Python."""
    from agi_core.install.artifacts import uv_binary

    uv = str(uv_binary())
    env = {**os.environ, "UV_NO_PROGRESS": "1"}
    if not (venv / "bin" / "python").exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in MATCHED]
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    "dask-gateway-server[local]", "dask-gateway", "uv", *pins], check=True, env=env)
    return venv / "bin" / "python"


@dataclass
class GatewayServer:
    """A running dask-gateway-server: its URL, its image's Python and its process."""

    url: str
    python: Path
    folder: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def up(cls, folder: Path, *, timeout: float = 60.0) -> GatewayServer:
        folder.mkdir(parents=True, exist_ok=True)
        python = build_image(folder / "image")
        bin_dir = python.parent
        port = _free_port()
        config = folder / "gateway_config.py"
        config.write_text("\n".join([
            f"c.Proxy.address = '127.0.0.1:{port}'",
            "c.Gateway.backend_class = 'dask_gateway_server.backends.local.UnsafeLocalBackend'",
            "c.Gateway.authenticator_class = 'dask_gateway_server.auth.SimpleAuthenticator'",
            f"c.SimpleAuthenticator.password = {PASSWORD!r}",
            f"c.LocalBackend.clusters_directory = {str(folder / 'clusters')!r}",
            # an image of its own: not this process's PYTHONPATH, PATH or VIRTUAL_ENV (which would let the
            # workers import agi_core from the source tree and hide whether shipping works)
            "c.LocalBackend.inherited_environment = ['LANG', 'LC_ALL']",
            "c.ClusterConfig.worker_cores = 1",
            "c.ClusterConfig.worker_memory = '1 G'",
            # distributed >= 2026 has no dask-scheduler / dask-worker commands: the `dask` sub-commands of the image
            f"c.ClusterConfig.scheduler_cmd = [{str(bin_dir / 'dask')!r}, 'scheduler']",
            f"c.ClusterConfig.worker_cmd = [{str(bin_dir / 'dask')!r}, 'worker']",
            # the image's own PATH first: its uv is the one the shipped environment is installed with
            # HOSTNAME as in a Kubernetes pod (its name), which the run record keeps per partition
            (f"c.ClusterConfig.environment = {{'PATH': {str(bin_dir) + ':/usr/bin:/bin'!r}, 'HOME': {str(folder / 'home')!r}, "
             "'HOSTNAME': 'gateway-pod-1'}"),
            "",
        ]))
        (folder / "home").mkdir(exist_ok=True)
        log = (folder / "server.log").open("ab")
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        process = subprocess.Popen([str(bin_dir / "dask-gateway-server"), "-f", str(config)], cwd=folder, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=env)
        server = cls(f"http://127.0.0.1:{port}", python, folder, process)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dask-gateway-server exited ({process.returncode}): {server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/health", timeout=2) as answer:
                    if json.load(answer).get("status") == "pass":
                        return server
            except OSError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"dask-gateway-server did not answer within {timeout:g} s: {server.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 20) -> str:
        path = self.folder / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM (the server stops its clusters), then SIGKILL after 15 s; idempotent."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
