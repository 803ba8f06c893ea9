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
   at most 12x, in at most 1 GiB), each against the same run with --no-cache. Results go to
   results/cache_noop.json.

Usage: python benchmarks/cache.py [--repeats 5]
       python benchmarks/cache.py --noop 100000,1000000 [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, write  # noqa: E402

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


def noop_process(share: str, n: int, *, use_cache: bool = True) -> dict[str, Any]:
    """One `agi run noop` as its own process: wall time (interpreter start and imports included)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PROCESS, str(ROOT / "tests" / "apps"), share, str(n), "1" if use_cache else "0"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    assert out.returncode == 0, out.stderr[-2000:]
    return {"wall_s": round(wall, 4), **json.loads(out.stdout.strip().splitlines()[-1])}


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


def _runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"wall": summary([r["wall_s"] for r in runs]), "manager_peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}


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
        "unchanged_rerun_manager_rss_mib": max(r["peak_rss_mib"] for r in reruns),
        "unchanged_rerun_parts_median": {k: round(sorted(p[k] for p in parts)[len(parts) // 2], 4) for k in parts[0]},
        "all_miss": {n: _runs(runs) for n, runs in miss.items()},
        "no_cache": {n: _runs(runs) for n, runs in off.items()},
    }
    result["ratio_rerun_over_first_run"] = round(result["unchanged_rerun_wall"]["median_s"] / first["wall_s"], 3)
    for n in sizes:
        result[f"ratio_all_miss_over_no_cache_{n}"] = round(result["all_miss"][n]["wall"]["median_s"]
                                                            / result["no_cache"][n]["wall"]["median_s"], 3)
    for n in sizes[1:]:
        result[f"growth_all_miss_{n}_over_{base}"] = round(result["all_miss"][n]["wall"]["median_s"]
                                                           / result["all_miss"][base]["wall"]["median_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--noop", default="", help="N[,M]: the no-op scale part only (see the module's docstring)")
    options = parser.parse_args()
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="agi-bench-state-"))
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
    main()
