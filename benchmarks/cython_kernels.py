"""Mode 0 vs mode 2 (Cython kernels) vs mode 3 (Cython + pool) on the Mandelbrot example, same run.

The kernels are compiled first into a temporary copy of the app (so the repository stays clean).

Usage: python benchmarks/cython_kernels.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, timed, write  # noqa: E402

from agi_core import AGI, AgiEnv  # noqa: E402
from agi_core.install.cython_build import build_in_place  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        apps = Path(tmp) / "apps"
        shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        start = time.perf_counter()
        build_in_place(apps / "mandelbrot_project" / "src" / "mandelbrot")
        build_s = time.perf_counter() - start
        env = AgiEnv(app="mandelbrot", apps_path=apps)
        run = lambda mode: asyncio.run(AGI.run(env, mode=mode, cluster={"workers_data_path": f"{tmp}/share"}, progress=False))  # noqa: E731
        run(0)
        times = {mode: timed(lambda m=mode: run(m), options.repeats) for mode in (0, 2, 3)}
    med = {mode: statistics.median(t) for mode, t in times.items()}
    write("cython_kernels", {
        "app": "mandelbrot (default args)", "build_s": round(build_s, 2),
        "mode0": summary(times[0]), "mode2_cython": summary(times[2]), "mode3_cython_pool": summary(times[3]),
        "ratios": {"mode2_speedup_over_mode0": round(med[0] / med[2], 3), "mode3_speedup_over_mode0": round(med[0] / med[3], 3)},
    })


if __name__ == "__main__":
    main()
