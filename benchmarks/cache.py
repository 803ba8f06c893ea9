"""The result cache: what an unchanged re-run costs, and what storing every result costs.

1. Re-run: the heat DAG app and mandelbrot (their default args, pool bit), a first run on an
   empty cache against the unchanged re-run right after it; the re-run must compute nothing.
2. Overhead: mandelbrot (pool bit) where every partition misses the cache (a fresh, empty cache
   each time: every result is computed and stored) against the same run with ``--no-cache``,
   interleaved so the machine's load hits both alike.

Every run is a whole `AGI.run` (plan, balance, dispatch, reduce, record). Results go to
results/cache.json as medians and ratios.

Usage: python benchmarks/cache.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="agi-bench-state-"))
    heat = AgiEnv(app="heat", apps_path=ROOT / "apps")
    mandelbrot = AgiEnv(app="mandelbrot", apps_path=ROOT / "apps")
    timed_run(mandelbrot, tempfile.mkdtemp(), use_cache=False)  # warm the imports and the page cache once
    write("cache", {"repeats": options.repeats, "workers": WORKERS, "mode": "p",
                    "rerun_heat_dag": rerun(heat, options.repeats), "rerun_mandelbrot": rerun(mandelbrot, options.repeats),
                    "overhead_mandelbrot": overhead(mandelbrot, options.repeats)})


if __name__ == "__main__":
    main()
