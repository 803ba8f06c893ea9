"""Cluster mode (bit 4) against plain Dask on this machine, each comparison in the same run.

(a) 2,000 no-op partitions: `AGI.run` on a warm local cluster vs plain `client.map` of the same
    function on the same cluster;
(b) 200 partitions of 50 ms, same comparison;
(c) time to the first result after `AGI.run` is called: cold (cluster started for the run) vs warm;
(d) the Mandelbrot example on a warm cluster of 1 worker vs 2 workers;
(e) the whole `agi run` process in mode 4 on the embedded default (cluster started, one tiny
    partition, stopped) vs a plain-Dask script that starts a 2-worker LocalCluster, runs one task
    and stops it.

Usage: python benchmarks/cluster.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, warm_security, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agi_core import AGI, AgiEnv  # noqa: E402

PLAIN_DASK = """
from distributed import Client, LocalCluster
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        assert client.submit(lambda x: x + 1, 1).result() == 2
"""


def square(i: int) -> dict:
    return {"square": i * i}


def sleepy(i: int) -> dict:
    time.sleep(0.05)
    return {"square": i * i}


async def timed_run(env: AgiEnv, share: str, workers: int, **args) -> tuple[float, float]:
    """(seconds to the first outcome, seconds in all) of one AGI.run in mode 4."""
    start = time.perf_counter()
    first: list[float] = []
    await AGI.run(env, mode="d", cluster={"workers_data_path": share, "workers": {"127.0.0.1": workers}}, use_cache=False,
                  on_outcome=lambda _: first or first.append(time.perf_counter() - start), **args)
    return first[0], time.perf_counter() - start


async def plain_map(address: str, function, n: int, security=None) -> float:
    from distributed import Client

    async with Client(address, asynchronous=True, security=security) as client:
        start = time.perf_counter()
        futures = client.map(function, range(n), pure=False)
        await client.gather(futures)
        return time.perf_counter() - start


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


async def warm_comparisons(toy: AgiEnv, share: str, repeats: int) -> dict:
    status = await AGI.cluster_up(toy, cluster={"workers": {"127.0.0.1": 2}, "dask": {"scheduler_port": 0, "dashboard_port": None}})
    try:
        security = warm_security(toy.name)  # the cluster's own credentials (TLS by default)
        await timed_run(toy, share, 2, n=10)  # warm the workers' imports
        noop_agi = [(await timed_run(toy, share, 2, n=2000))[1] for _ in range(repeats)]
        noop_plain = [await plain_map(status.address, square, 2000, security) for _ in range(repeats)]
        sleep_agi = [(await timed_run(toy, share, 2, n=200, sleep=0.05))[1] for _ in range(repeats)]
        sleep_plain = [await plain_map(status.address, sleepy, 200, security) for _ in range(repeats)]
        first_warm = [(await timed_run(toy, share, 2, n=20))[0] for _ in range(repeats)]
    finally:
        await AGI.cluster_down(toy)
    return {"noop_agi": noop_agi, "noop_plain": noop_plain, "sleep_agi": sleep_agi, "sleep_plain": sleep_plain, "first_warm": first_warm}


async def mandelbrot_scaling(share: str, repeats: int) -> dict:
    env = AgiEnv(app="mandelbrot")
    times = {}
    for workers in (1, 2):
        await AGI.cluster_up(env, cluster={"workers": {"127.0.0.1": workers}, "dask": {"scheduler_port": 0, "dashboard_port": None}})
        try:
            await timed_run(env, share, workers, bands=8, width=200, height=150)  # warm imports
            times[workers] = [(await timed_run(env, share, workers))[1] for _ in range(repeats)]
        finally:
            await AGI.cluster_down(env)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_STATE_HOME"] = f"{tmp}/state"  # private warm-cluster state
        share = f"{tmp}/share"
        toy = AgiEnv(app="toy", apps_path=ROOT / "tests" / "apps")
        warm = asyncio.run(warm_comparisons(toy, share, options.repeats))
        first_cold = [asyncio.run(timed_run(toy, share, 2, n=20))[0] for _ in range(options.repeats)]
        scaling = asyncio.run(mandelbrot_scaling(share, options.repeats))
        agi_cmd = [sys.executable, "-m", "agi_core.cli", "--apps-path", str(ROOT / "tests" / "apps"), "run", "toy", "--mode", "d",
                   "--no-progress", "--no-cache", "--set", "n=1", "--set", f'cluster.workers_data_path="{share}"', "--set", 'cluster.workers."127.0.0.1"=2']
        plain_cmd = [sys.executable, "-c", PLAIN_DASK]
        whole_agi, whole_plain = [], []
        for _ in range(options.repeats + 2):
            for cmd, into in ((agi_cmd, whole_agi), (plain_cmd, whole_plain)):
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
                into.append(time.perf_counter() - start)
    write("cluster", {
        "workers": 2,
        "a_noop_2000": {"agi": summary(warm["noop_agi"]), "plain_client_map": summary(warm["noop_plain"]),
                        "ratio_agi_over_plain": round(median(warm["noop_agi"]) / median(warm["noop_plain"]), 3)},
        "b_sleep50ms_200": {"agi": summary(warm["sleep_agi"]), "plain_client_map": summary(warm["sleep_plain"]),
                            "ratio_agi_over_plain": round(median(warm["sleep_agi"]) / median(warm["sleep_plain"]), 3)},
        "c_first_result": {"cold": summary(first_cold), "warm": summary(warm["first_warm"]),
                           "ratio_warm_over_cold": round(median(warm["first_warm"]) / median(first_cold), 3)},
        "d_mandelbrot_workers": {"1": summary(scaling[1]), "2": summary(scaling[2]),
                                 "speedup_2_over_1": round(median(scaling[1]) / median(scaling[2]), 3)},
        "e_whole_process": {"agi_run_mode4": summary(whole_agi), "plain_dask_script": summary(whole_plain),
                            "ratio_agi_over_plain": round(median(whole_agi) / median(whole_plain), 3)},
    })


if __name__ == "__main__":
    main()
