"""Scale: the cost of a run as its partitions grow, 1,000 → 10,000 → 100,000 no-op partitions.

Pool bit (`AGI.run` mode 1, 2 slots) and cluster bit (mode 4 on a warm local cluster of 2
workers), each against its plain baseline in the same run: a `ProcessPoolExecutor.map` with
chunks for the pool, `client.map` over batches on the same cluster for Dask. The run's whole cost
is measured (plan, balance, dispatch, record with every partition), without the result cache:
this is the orchestration's own cost (storing a cache entry costs one file creation per
partition, 0.1-1.5 ms on this machine's disk; see benchmarks/cache.py). Linear means the
100,000 run costs about 10x the 10,000 one.

With ``--cache``: the same no-op runs with the result cache on, every partition a miss (a fresh,
empty cache each time: every result is stored, in pack files), against the same run with
``--no-cache``, interleaved, for the pool (mode p) and the cluster (mode d); results go to
results/scale_cache.json (target: at most 1.3x). A third variant keys the plan once and reuses the
keys (`plan_keys` memoised: it is the cache's manager-side cost that is not the store's, about
1 s per 100,000 partitions today), to tell the store's cost from the keying's.

Usage: python benchmarks/scale.py [--repeats 3] [--sizes 1000,10000,100000] [--cache]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch, summary, timed, warm_security, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agi_core import AGI, AgiEnv  # noqa: E402

WORKERS = {"127.0.0.1": 2}


def identity(i: int) -> int:
    return i


def identity_batch(items: list[int]) -> list[int]:
    return [identity(i) for i in items]


def run_pool(env: AgiEnv, share: str, n: int, *, use_cache: bool = False) -> None:
    result = asyncio.run(AGI.run(env, mode="p", n=n, cluster={"workers_data_path": share, "workers": WORKERS}, use_cache=use_cache))
    assert result.value == n


def plain_pool(n: int) -> None:
    with ProcessPoolExecutor(2) as pool:
        assert sum(1 for _ in pool.map(identity, range(n), chunksize=max(1, n // 64))) == n


async def dask_rounds(env: AgiEnv, share: str, sizes: list[int], repeats: int) -> dict[int, dict[str, list[float]]]:
    from distributed import Client

    cluster = {"workers_data_path": share, "workers": WORKERS}
    status = await AGI.cluster_up(env, mode="d", cluster=cluster)
    times: dict[int, dict[str, list[float]]] = {n: {"agi": [], "plain": []} for n in sizes}
    try:
        client = await Client(status.address, asynchronous=True, security=warm_security(env.name))
        try:
            for n in sizes:
                for _ in range(repeats):
                    start = time.perf_counter()
                    result = await AGI.run(env, mode="d", n=n, cluster=cluster, use_cache=False)
                    assert result.value == n
                    times[n]["agi"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    chunks = [list(range(k, min(n, k + 1000))) for k in range(0, n, 1000)]
                    out = await client.gather(client.map(identity_batch, chunks, pure=False))
                    assert sum(len(o) for o in out) == n
                    times[n]["plain"].append(time.perf_counter() - start)
        finally:
            await client.close()
    finally:
        await AGI.cluster_down(env, cluster=cluster)
    return times


async def dask_cache_rounds(env: AgiEnv, sizes: list[int], repeats: int) -> dict[int, dict[str, list[float]]]:
    """Mode d on one warm cluster: all-miss runs (a fresh share each) against --no-cache runs, interleaved."""
    share = tempfile.mkdtemp(prefix="agi-bench-scale-")
    cluster = {"workers_data_path": share, "workers": WORKERS}
    await AGI.cluster_up(env, mode="d", cluster=cluster)
    times: dict[int, dict[str, list[float]]] = {n: {"cache": [], "no_cache": []} for n in sizes}
    try:
        for n in sizes:
            for _ in range(repeats):
                fresh = {**cluster, "workers_data_path": tempfile.mkdtemp(prefix="agi-bench-scale-")}
                start = time.perf_counter()
                assert (await AGI.run(env, mode="d", n=n, cluster=fresh)).value == n
                times[n]["cache"].append(time.perf_counter() - start)
                start = time.perf_counter()
                assert (await AGI.run(env, mode="d", n=n, cluster=cluster, use_cache=False)).value == n
                times[n]["no_cache"].append(time.perf_counter() - start)
    finally:
        await AGI.cluster_down(env, cluster=cluster)
    return times


@contextlib.contextmanager
def keys_memoised() -> Iterator[None]:
    """`plan_keys` computed once per plan size and reused (the store's cost without the keying's)."""
    import agi_core.run.caching as caching

    real, memo = caching.plan_keys, {}

    def once(parts, **kwargs):  # type: ignore[no-untyped-def]
        if len(parts) not in memo:
            memo[len(parts)] = real(parts, **kwargs)
        return memo[len(parts)]

    caching.plan_keys = once
    try:
        yield
    finally:
        caching.plan_keys = real


def cache_main(env: AgiEnv, sizes: list[int], repeats: int) -> None:
    def table(times: dict[str, list[float]]) -> dict[str, object]:
        return {"cache_all_miss": summary(times["cache"]), "no_cache": summary(times["no_cache"]),
                "ratio_cache_over_no_cache": round(summary(times["cache"])["median_s"]
                                                   / summary(times["no_cache"])["median_s"], 3)}

    pool = {}
    for n in sizes:
        times: dict[str, list[float]] = {"cache": [], "no_cache": [], "keyed_once": []}
        for _ in range(repeats):
            share = tempfile.mkdtemp(prefix="agi-bench-scale-")
            times["cache"] += timed(lambda: run_pool(env, share, n, use_cache=True), 1)
            times["no_cache"] += timed(lambda: run_pool(env, share, n), 1)
            with keys_memoised():
                run_pool(env, tempfile.mkdtemp(prefix="agi-bench-scale-"), n, use_cache=True)  # keys the plan
                fresh = tempfile.mkdtemp(prefix="agi-bench-scale-")
                times["keyed_once"] += timed(lambda: run_pool(env, fresh, n, use_cache=True), 1)
        pool[n] = {**table(times), "cache_all_miss_keys_memoised": summary(times["keyed_once"]),
                   "ratio_keys_memoised_over_no_cache": round(summary(times["keyed_once"])["median_s"]
                                                              / summary(times["no_cache"])["median_s"], 3)}
    cluster = {n: table(t) for n, t in asyncio.run(dask_cache_rounds(env, sizes, repeats)).items()}
    write("scale_cache", {"sizes": sizes, "repeats": repeats, "workers": WORKERS, "pool_mode_p": pool, "cluster_mode_d": cluster})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--cache", action="store_true", help="cache on (all misses) against --no-cache, modes p and d")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    env = AgiEnv(app="noop", apps_path=ROOT / "tests" / "apps")
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="agi-bench-state-"))
    if options.cache:
        cache_main(env, sizes, options.repeats)
        return
    share = tempfile.mkdtemp(prefix="agi-bench-scale-")
    pool = {}
    for n in sizes:
        agi = timed(lambda n=n: run_pool(env, share, n), options.repeats)
        plain = timed(lambda n=n: plain_pool(n), options.repeats)
        pool[n] = {"agi": summary(agi), "plain_process_pool": summary(plain),
                   "ratio_agi_over_plain": round(summary(agi)["median_s"] / summary(plain)["median_s"], 3)}
    dask_times = asyncio.run(dask_rounds(env, share, sizes, options.repeats))
    cluster = {n: {"agi": summary(t["agi"]), "plain_client_map": summary(t["plain"]),
                   "ratio_agi_over_plain": round(summary(t["agi"])["median_s"] / summary(t["plain"])["median_s"], 3)}
               for n, t in dask_times.items()}

    def growth(table: dict[int, dict]) -> dict[str, float]:
        return {f"{b}/{a}": round(table[b]["agi"]["median_s"] / table[a]["agi"]["median_s"], 2) for a, b in zip(sizes, sizes[1:])}

    write("scale", {"sizes": sizes, "repeats": options.repeats, "pool_mode_1": pool, "cluster_mode_4": cluster,
                    "growth_pool": growth(pool), "growth_cluster": growth(cluster)})


if __name__ == "__main__":
    with scratch():
        main()
