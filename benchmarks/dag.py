"""A 1,000-node DAG of no-op nodes: `AGI.run` (cluster bit) against the same graph submitted
directly to Dask, on the same warm local cluster of 2 workers, interleaved.

The graph (the noop test app with ``layers``): 10 layers of 100 nodes, each node of a layer
depending on two nodes of the layer before. Plain Dask gets it as ``client.submit`` calls whose
arguments are the futures of the dependencies, all at once, and gathers the last layer.
`AGI.run` plans, balances, submits each node when the graph driver says it is ready, and writes
the record. It runs without the cache (plain Dask has none), and once more with an empty cache to
show what storing 1,000 entries costs.

Usage: python benchmarks/dag.py [--repeats 5] [--nodes 1000] [--layers 10]
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
from _common import scratch, summary, warm_security, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agi_core import AGI, AgiEnv  # noqa: E402

WORKERS = {"127.0.0.1": 2}


def node(i: int, *deps: int) -> int:
    return i


async def plain_dask(client, n: int, layers: int) -> None:
    width = n // layers
    futures = []
    for i in range(n):
        layer, k = divmod(i, width)
        deps = [] if layer == 0 else [futures[(layer - 1) * width + j % width] for j in dict.fromkeys((k, k + 1))]
        futures.append(client.submit(node, i, *deps, pure=False))
    out = await client.gather(futures[-width:])
    assert len(out) == width


async def rounds(n: int, layers: int, repeats: int) -> dict[str, list[float]]:
    from distributed import Client

    env = AgiEnv(app="noop", apps_path=ROOT / "tests" / "apps")
    share = tempfile.mkdtemp(prefix="agi-bench-dag-")
    cluster = {"workers_data_path": share, "workers": WORKERS, "dask": {"dashboard_port": None}}
    status = await AGI.cluster_up(env, mode="d", cluster=cluster)
    times: dict[str, list[float]] = {"agi_no_cache": [], "plain_dask": [], "agi_empty_cache": []}
    try:
        client = await Client(status.address, asynchronous=True, security=warm_security(env.name))
        try:
            await plain_dask(client, n, layers)  # warm up both paths once
            await AGI.run(env, mode="d", n=n, layers=layers, cluster=cluster, use_cache=False)
            for _ in range(repeats):
                start = time.perf_counter()
                result = await AGI.run(env, mode="d", n=n, layers=layers, cluster=cluster, use_cache=False)
                times["agi_no_cache"].append(time.perf_counter() - start)
                assert result.value == n
                start = time.perf_counter()
                await plain_dask(client, n, layers)
                times["plain_dask"].append(time.perf_counter() - start)
                fresh = {**cluster, "workers_data_path": tempfile.mkdtemp(prefix="agi-bench-dag-")}
                start = time.perf_counter()
                result = await AGI.run(env, mode="d", n=n, layers=layers, cluster=fresh)
                times["agi_empty_cache"].append(time.perf_counter() - start)
                assert result.value == n
        finally:
            await client.close()
    finally:
        await AGI.cluster_down(env, cluster=cluster)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=10)
    options = parser.parse_args()
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="agi-bench-state-"))
    times = asyncio.run(rounds(options.nodes, options.layers, options.repeats))
    table = {name: summary(t) for name, t in times.items()}
    plain = table["plain_dask"]["median_s"]
    write("dag", {"nodes": options.nodes, "layers": options.layers, "repeats": options.repeats, "workers": WORKERS, **table,
                  "ratio_agi_over_plain": round(table["agi_no_cache"]["median_s"] / plain, 3),
                  "ratio_agi_empty_cache_over_plain": round(table["agi_empty_cache"]["median_s"] / plain, 3)})


if __name__ == "__main__":
    with scratch():
        main()
