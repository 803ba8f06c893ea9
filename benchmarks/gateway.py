"""The Gateway backend's costs against a real dask-gateway-server (local backend, this machine).

(a) a Gateway cluster of 2 workers: asked for, scaled, workers joined (what every run's own
    cluster pays before shipping);
(b) shipping the `ledger` app's environment (agi_core, the app, their pinned dependencies) to
    its scheduler and workers through Dask (`env_shipping`):
    - ``install``: a fresh ``env_root``: the wheels travel and uv installs them on each process;
    - ``present``: a new cluster whose processes find the environment on disk (a persistent
      ``env_root``): the wheels travel, nothing is installed;
    - ``noop``: the same cluster asked again (a warm cluster): one scheduler round trip, after the
      wheelhouse is found in the cache; nothing travels.
The wheelhouse itself is built once, first, in a private agi cache (``wheelhouse_build_s``).

Usage: python benchmarks/gateway.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway_server import PASSWORD, GatewayServer  # noqa: E402

APP = ROOT / "tests" / "apps" / "ledger_project"


async def _cluster(url: str):
    """A Gateway cluster of 2 workers and a client: (gateway, cluster, client, seconds)."""
    from dask_gateway import BasicAuth, Gateway

    from agi_core.cluster.client import open_client

    start = time.perf_counter()
    gateway = Gateway(url, auth=BasicAuth("bench", PASSWORD), asynchronous=True)
    cluster = await gateway.new_cluster()
    await cluster.scale(2)
    client = await open_client(cluster.scheduler_address, security=cluster.security)
    await client.wait_for_workers(2, timeout=120)
    return gateway, cluster, client, time.perf_counter() - start


async def _close(gateway, cluster, client) -> None:
    await client.close()
    await cluster.shutdown()
    await gateway.close()


async def _ship(client, root: str):
    from agi_core.cluster.env_shipping import ship_environment

    return await ship_environment(client, app="ledger", project_dir=APP, root=root)


async def measure(url: str, folder: Path, repeats: int) -> dict:
    from agi_core.app.env import AgiEnv
    from agi_core.cluster.env_remote import probe
    from agi_core.cluster.env_shipping import wheel_target
    from agi_core.install.artifacts import ArtifactBuilder

    start = time.perf_counter()
    artifacts = await ArtifactBuilder(AgiEnv(app="ledger", apps_path=APP.parent), Path(os.environ["XDG_CACHE_HOME"]) / "agi_core"
                                      ).build(wheel_target({"this machine": probe()}))
    build = time.perf_counter() - start
    up, install, present, noop, sizes = [], [], [], [], []
    for k in range(repeats):
        root = str(folder / f"envs-{k}")
        gateway, cluster, client, seconds = await _cluster(url)
        up.append(seconds)
        first = await _ship(client, root)
        install.append(first.seconds)
        sizes.append(first.bytes)
        await _close(gateway, cluster, client)
        gateway, cluster, client, seconds = await _cluster(url)
        up.append(seconds)
        second = await _ship(client, root)
        present.append(second.seconds)
        again = await _ship(client, root)
        assert not again.shipped
        noop.append(again.seconds)
        await _close(gateway, cluster, client)
    return {"wheelhouse_build_s": round(build, 3), "wheels": len(artifacts.files), "shipped_bytes": sizes[0],
            "cluster_2_workers": summary(up), "ship_install": summary(install), "ship_present": summary(present),
            "ship_noop": summary(noop)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory(prefix="agi-bench-gateway-") as tmp:
        folder = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(folder / "cache")
        server = GatewayServer.up(folder / "server")
        try:
            results = asyncio.run(measure(server.url, folder, repeats))
        finally:
            server.stop()
    write("gateway", {"repeats": repeats, **results})


if __name__ == "__main__":
    main()
