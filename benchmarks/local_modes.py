"""Mode 0 vs the pool bit on the Mandelbrot example, and a hand-written process pool as baseline.

All three render the same image with the same kernel in the same run of this script:
- ``mode0``: ``AGI.run(env, mode=0)`` (every band in this process);
- ``pool``: ``AGI.run(env, mode=1)`` (one worker process per core);
- ``handwritten``: ``concurrent.futures.ProcessPoolExecutor.map`` over the same bands, then the
  same colouring and PNG write: what a user would write without agi_core.

Usage: python benchmarks/local_modes.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, timed, write  # noqa: E402

from agi_core import AGI, AgiEnv  # noqa: E402


def _band(job: tuple) -> dict:
    from mandelbrot.app import MandelbrotArgs, shades
    from mandelbrot.kernels import escape_counts

    args_dict, top, bottom = job
    args = MandelbrotArgs(**args_dict)
    re, im = args.axes()
    counts = escape_counts(re, im[top:bottom], args.max_iter)
    return {"top": top, "shade": shades(counts, args.max_iter)}


def handwritten(env: AgiEnv, out: Path, workers: int) -> None:
    """The same work with nothing but the standard library's process pool."""
    import numpy as np
    from mandelbrot.app import write_png

    args = env.settings().args
    edges = np.linspace(0, args.height, args.bands + 1).astype(int)
    jobs = [(args.model_dump(), int(edges[k]), int(edges[k + 1])) for k in range(args.bands)]
    with ProcessPoolExecutor(workers) as pool:
        bands = list(pool.map(_band, jobs))
    write_png(np.vstack([b["shade"] for b in bands]), out / "hand.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    env = AgiEnv(app="mandelbrot")
    sys.path.insert(0, str(env.src_dir))
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as share:
        cluster = {"workers_data_path": share}
        run = lambda mode: asyncio.run(AGI.run(env, mode=mode, cluster=cluster, use_cache=False))  # noqa: E731
        run(0)  # warm the file cache and imports
        mode0 = timed(lambda: run(0), options.repeats)
        pool = timed(lambda: run(1), options.repeats)
        hand = timed(lambda: handwritten(env, Path(share), workers), options.repeats)
    args = env.settings().args.model_dump()
    med = lambda times: summary(times)["median_s"]  # noqa: E731
    write("local_modes", {
        "app": "mandelbrot", "args": args, "pool_width": workers,
        "mode0": summary(mode0), "pool": summary(pool), "handwritten_pool": summary(hand),
        "ratios": {
            "pool_speedup_over_mode0": round(med(mode0) / med(pool), 3),
            "pool_time_over_handwritten": round(med(pool) / med(hand), 3),
        },
    })


if __name__ == "__main__":
    main()
