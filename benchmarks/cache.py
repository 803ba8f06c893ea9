"""The result cache: what an unchanged re-run costs, and what storing every result costs.

1. Re-run: the heat DAG app and mandelbrot (their default args, pool bit), a first run on an
   empty cache against the unchanged re-run right after it; the re-run must compute nothing.
2. Overhead: mandelbrot (pool bit) where every partition misses the cache (a fresh, empty cache
   each time: every result is computed and stored) against the same run with ``--no-cache``,
   interleaved so the machine's load hits both alike.

Every run is a whole `AGI.run` (plan, balance, dispatch, reduce, record). Results go to
results/cache.json as medians and ratios.

3. ``--noop N[,M]``: no-op partitions (tests/apps/noop, pool bit), each run a whole ``agi run``
   process: an unchanged re-run of N partitions (target: 2 s, planning and keying included),
   with its parts timed in-process (plan, `plan_keys`, reading the indexes, loading the hits);
   and all-miss runs of N and M partitions with the manager's peak RSS (target: M = 10 N costs
   at most 12x, in at most 1 GiB), each against the same run with --no-cache; and what tagging and
   checking one entry's HMAC costs (`auth_cost`). Results go to results/cache_noop.json.

4. ``--big N,KB``: N no-op partitions (pool bit) whose results each carry KB KiB: all-miss runs
   against ``--no-cache`` ones, interleaved, where what the cache adds is mostly moving results
   (pickled once on the worker for its entry and for the way back): results/cache_big.json.

5. ``--against TREE``: this tree's no-op runs (re-run and all-miss, N partitions) interleaved
   with another checkout's (e.g. before cache entries were authenticated): results/cache_auth.json.

Usage: python benchmarks/cache.py [--repeats 5]
       python benchmarks/cache.py --noop 100000,1000000 [--repeats 3]
       python benchmarks/cache.py --big 32,4096 [--repeats 5]
       python benchmarks/cache.py --against /tmp/main-checkout [--noop 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch, summary, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agi_core import AGI, AgiEnv  # noqa: E402
from agi_core.provenance import read_record  # noqa: E402

WORKERS = {"127.0.0.1": 2}


def timed_run(env: AgiEnv, share: str, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = asyncio.run(AGI.run(env, mode="p", cluster={"workers_data_path": share, "workers": WORKERS}, **kwargs))
    return time.perf_counter() - start, result


def rerun(env: AgiEnv, repeats: int) -> dict[str, Any]:
    first, again = [], []
    for _ in range(repeats):
        share = tempfile.mkdtemp(prefix="agi-bench-cache-")
        seconds, _ = timed_run(env, share)
        first.append(seconds)
        seconds, result = timed_run(env, share)
        again.append(seconds)
        computed = [p.id for p in read_record(result.manifest).partitions if p.cache != "hit"]
        assert not computed, f"the unchanged re-run computed {computed}"
    return {"first_run": summary(first), "unchanged_rerun": summary(again),
            "ratio_rerun_over_first": round(summary(again)["median_s"] / summary(first)["median_s"], 4)}


def overhead(env: AgiEnv, repeats: int) -> dict[str, Any]:
    miss, off = [], []
    share = tempfile.mkdtemp(prefix="agi-bench-cache-")
    for _ in range(repeats):
        seconds, result = timed_run(env, tempfile.mkdtemp(prefix="agi-bench-cache-"))
        assert {p.cache for p in read_record(result.manifest).partitions} == {"stored"}
        miss.append(seconds)
        off.append(timed_run(env, share, use_cache=False)[0])
    return {"all_miss": summary(miss), "no_cache": summary(off), "partitions": len(result.outcomes),
            "ratio_all_miss_over_no_cache": round(summary(miss)["median_s"] / summary(off)["median_s"], 4)}


#: a whole `agi run` process that also reports its own peak RSS (the manager's, not its slots')
_PROCESS = """
import asyncio, json, resource, sys, time
start = time.perf_counter()
from agi_core import AGI, AgiEnv
env = AgiEnv(app="noop", apps_path=sys.argv[1])
result = asyncio.run(AGI.run(env, mode="p", n=int(sys.argv[3]), use_cache=sys.argv[4] == "1",
                             cluster={"workers_data_path": sys.argv[2], "workers": {"127.0.0.1": 2}}))
assert result.value == int(sys.argv[3]), result.value
print(json.dumps({"run_s": time.perf_counter() - start, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "status": result.status}))
"""


def noop_process(share: str, n: int, *, use_cache: bool = True, tree: Path = ROOT) -> dict[str, Any]:
    """One `agi run noop` as its own process: wall time (interpreter start and imports included).
    ``tree``: the agi_core source tree to run (another checkout, for a before/after comparison)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PROCESS, str(tree / "tests" / "apps"), share, str(n), "1" if use_cache else "0"],
                         capture_output=True, text=True, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert out.returncode == 0, out.stderr[-2000:]
    # CPU time (user + system) of the process and the slots it waited for: steadier than wall
    # time on a shared machine, where other processes' load stretches every wait
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), **json.loads(out.stdout.strip().splitlines()[-1])}


def rerun_parts(share: str, n: int) -> dict[str, float]:
    """The manager's cache work in an unchanged re-run, part by part, in this process."""
    from agi_core.cache import CacheStore, plan_keys

    env = AgiEnv(app="noop", apps_path=ROOT / "tests" / "apps")
    app = env.app_class()
    args = app.Args(n=n)
    start = time.perf_counter()
    parts = app.plan(args)
    planned = time.perf_counter()
    keys = plan_keys(parts, code=env.code_hash(), args=args.model_dump(), kernel="python")
    keyed = time.perf_counter()
    store = CacheStore.for_app(share, "noop")
    wanted = {key: pid for pid, key in keys.keys.items()}
    view = store.view(wanted)
    viewed = time.perf_counter()
    loaded = sum(1 for _, entry, _ in store.load_many(view, view.keys(), touch=False) if entry is not None)
    done = time.perf_counter()
    assert loaded == n, f"{loaded} of {n} entries loaded"
    whole = run_cache_load(env, share, n)
    return {"plan_s": round(planned - start, 4), "plan_keys_s": round(keyed - planned, 4),
            "read_indexes_s": round(viewed - keyed, 4),
            "load_hits_s": round(done - viewed, 4), "packs": len(list(store.packs_dir.glob("*.index"))), **whole}


def run_cache_load(env: AgiEnv, share: str, n: int) -> dict[str, float]:
    """An in-process re-run, with `RunCache.load` timed: the cache's whole manager-side work on
    hits (read the indexes, load and check every hit, and make each hit's outcome and record line)."""
    import agi_core.run.caching as caching

    real, spent = caching.RunCache.load, []

    def load(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return real(self, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    caching.RunCache.load = load  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        result = asyncio.run(AGI.run(env, mode="p", n=n, cluster={"workers_data_path": share, "workers": WORKERS}))
        whole = time.perf_counter() - start
    finally:
        caching.RunCache.load = real  # type: ignore[method-assign]
    assert result.value == n
    return {"in_process_rerun_s": round(whole, 4), "run_cache_load_s": round(sum(spent), 4)}


def auth_cost(count: int = 200_000) -> dict[str, float]:
    """What authenticating one entry costs (`agi_core.cache.auth`): tagging it (a worker storing
    it) and checking its tag (a run loading it), per entry, in microseconds."""
    import secrets
    import timeit

    from agi_core.cache.auth import CacheKey

    key = CacheKey(secrets.token_bytes(32))
    cache_key, digest = secrets.token_hex(32), secrets.token_hex(32)
    tag = key.tag(cache_key, digest, None)
    per = {name: min(timeit.repeat(call, number=count, repeat=3)) / count * 1e6
           for name, call in (("tag_us", lambda: key.tag(cache_key, digest, None)),
                              ("check_us", lambda: key.check(cache_key, digest, None, tag)))}
    return {name: round(value, 3) for name, value in per.items()}


def _runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"wall": summary([r["wall_s"] for r in runs]), "cpu": summary([r["cpu_s"] for r in runs]),
            "manager_peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}


def noop(sizes: list[int], repeats: int) -> dict[str, Any]:
    base = sizes[0]
    share = tempfile.mkdtemp(prefix="agi-bench-noop-")
    first = noop_process(share, base)
    reruns = [noop_process(share, base) for _ in range(repeats)]
    parts = [rerun_parts(share, base) for _ in range(repeats)]
    miss: dict[int, list[dict[str, Any]]] = {}
    off: dict[int, list[dict[str, Any]]] = {}
    for n in sizes:
        for _ in range(repeats if n == base else 1):  # interleaved: the machine's load hits both alike
            miss.setdefault(n, []).append(noop_process(tempfile.mkdtemp(prefix="agi-bench-noop-"), n))
            off.setdefault(n, []).append(noop_process(tempfile.mkdtemp(prefix="agi-bench-noop-"), n, use_cache=False))
    result: dict[str, Any] = {
        "partitions": base, "first_run": first,
        "unchanged_rerun_wall": summary([r["wall_s"] for r in reruns]),
        "unchanged_rerun_cpu": summary([r["cpu_s"] for r in reruns]),
        "unchanged_rerun_manager_rss_mib": max(r["peak_rss_mib"] for r in reruns),
        "unchanged_rerun_parts_median": {k: round(sorted(p[k] for p in parts)[len(parts) // 2], 4) for k in parts[0]},
        "all_miss": {n: _runs(runs) for n, runs in miss.items()},
        "no_cache": {n: _runs(runs) for n, runs in off.items()},
    }
    try:
        result["auth_per_entry"] = auth_cost()
    except ImportError:  # a tree before entries were authenticated (a before/after comparison)
        pass
    result["ratio_rerun_over_first_run"] = round(result["unchanged_rerun_wall"]["median_s"] / first["wall_s"], 3)
    for n in sizes:
        result[f"ratio_all_miss_over_no_cache_{n}"] = round(result["all_miss"][n]["wall"]["median_s"]
                                                            / result["no_cache"][n]["wall"]["median_s"], 3)
    for n in sizes[1:]:
        result[f"growth_all_miss_{n}_over_{base}"] = round(result["all_miss"][n]["wall"]["median_s"]
                                                           / result["all_miss"][base]["wall"]["median_s"], 3)
    return result


def against(before: Path, n: int, repeats: int) -> dict[str, Any]:
    """This tree against another checkout (``before``), interleaved so the machine's load hits both
    alike: an unchanged re-run and an all-miss run of ``n`` no-op partitions, cache on (what
    authenticating every entry costs: tagging on store, checking on load)."""
    trees = {"before": before.resolve(), "after": ROOT}
    shares = {name: tempfile.mkdtemp(prefix=f"agi-bench-{name}-") for name in trees}
    for name, tree in trees.items():
        noop_process(shares[name], n, tree=tree)  # the entries the re-runs find
    rerun_s: dict[str, list[float]] = {name: [] for name in trees}
    miss_s: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(repeats):
        for name, tree in trees.items():
            rerun_s[name].append(noop_process(shares[name], n, tree=tree)["wall_s"])
            miss_s[name].append(noop_process(tempfile.mkdtemp(prefix="agi-bench-miss-"), n, tree=tree)["wall_s"])
    result: dict[str, Any] = {"partitions": n, "before_tree": str(before), "auth_per_entry": auth_cost()}
    for label, runs in (("unchanged_rerun", rerun_s), ("all_miss", miss_s)):
        result[label] = {name: summary(times) for name, times in runs.items()}
        result[f"ratio_{label}_after_over_before"] = round(summary(runs["after"])["median_s"] / summary(runs["before"])["median_s"], 3)
    return result


def big_results(n: int, kb: int, repeats: int) -> dict[str, Any]:
    """All-miss runs of ``n`` partitions with ``kb`` KiB results against ``--no-cache`` ones."""
    env = AgiEnv(app="noop", apps_path=ROOT / "tests" / "apps")
    miss, off = [], []
    for _ in range(repeats):
        for use_cache, times in ((True, miss), (False, off)):
            share = tempfile.mkdtemp(prefix="agi-bench-big-")
            start = time.perf_counter()
            result = asyncio.run(AGI.run(env, mode="p", n=n, result_kb=kb, use_cache=use_cache,
                                         cluster={"workers_data_path": share, "workers": WORKERS}))
            times.append(time.perf_counter() - start)
            assert result.value == n
    return {"partitions": n, "result_kib": kb, "all_miss": summary(miss), "no_cache": summary(off),
            "ratio_all_miss_over_no_cache": round(summary(miss)["median_s"] / summary(off)["median_s"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--noop", default="", help="N[,M]: the no-op scale part only (see the module's docstring)")
    parser.add_argument("--against", type=Path, default=None, metavar="TREE",
                        help="compare with another checkout's no-op runs (N from --noop, default 100000): results/cache_auth.json")
    parser.add_argument("--big", default="", metavar="N,KB", help="N partitions with KB KiB results: results/cache_big.json")
    options = parser.parse_args()
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="agi-bench-state-"))
    if options.against:
        write("cache_auth", {"repeats": options.repeats, "workers": WORKERS, "mode": "p",
                             **against(options.against, int(options.noop or 100_000), options.repeats)})
        return
    if options.big:
        n, kb = (int(v) for v in options.big.split(","))
        write("cache_big", {"repeats": options.repeats, "workers": WORKERS, "mode": "p", **big_results(n, kb, options.repeats)})
        return
    if options.noop:
        write("cache_noop", {"repeats": options.repeats, "workers": WORKERS, "mode": "p",
                             **noop([int(n) for n in options.noop.split(",")], options.repeats)})
        return
    heat = AgiEnv(app="heat", apps_path=ROOT / "apps")
    mandelbrot = AgiEnv(app="mandelbrot", apps_path=ROOT / "apps")
    timed_run(mandelbrot, tempfile.mkdtemp(), use_cache=False)  # warm the imports and the page cache once
    write("cache", {"repeats": options.repeats, "workers": WORKERS, "mode": "p",
                    "rerun_heat_dag": rerun(heat, options.repeats), "rerun_mandelbrot": rerun(mandelbrot, options.repeats),
                    "overhead_mandelbrot": overhead(mandelbrot, options.repeats)})


if __name__ == "__main__":
    with scratch():
        main()
