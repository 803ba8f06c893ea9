"""The cython bit on the Mandelbrot example (default args): mode 0 vs 2 (Cython) vs 3 (Cython + pool), same run.

The kernels are compiled first into a temporary copy of the app, so the repository stays clean; the
build time is recorded. The modes are timed round-robin (0, 1, 2, 3, 0, 1, ...) so that load from
other work on the machine spreads over all of them; mode 1 (pool, NumPy kernels) is there to compare
mode 3 with. ``kernel_only`` times ``escape_counts`` alone (NumPy vs Cython, on OpenMP's default
threads) over the plan's bands, one call per band as the modes make them, without colouring, the PNG
or the run machinery. Every mode's image is checked to be
byte-identical to mode 0's.

Usage: python benchmarks/cython_kernels.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, timed, write  # noqa: E402

from agi_core import AGI, AgiEnv  # noqa: E402
from agi_core.install.cython_build import build_in_place, compile_args  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = (0, 1, 2, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        apps = Path(tmp) / "apps"
        shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
        start = time.perf_counter()
        (module,) = build_in_place(apps / "mandelbrot_project" / "src" / "mandelbrot")
        build_s = time.perf_counter() - start
        build_args = compile_args(apps / "mandelbrot_project" / "src" / "mandelbrot" / "kernels_cy.pyx")[0]
        env = AgiEnv(app="mandelbrot", apps_path=apps)
        args = env.settings().args
        cluster = {"workers_data_path": f"{tmp}/share"}
        run = lambda mode: asyncio.run(AGI.run(env, mode=mode, cluster=cluster, use_cache=False))  # noqa: E731

        images = {mode: (run(mode).out_dir / "mandelbrot.png").read_bytes() for mode in MODES}  # warm-up, and the check
        times: dict[int, list[float]] = {mode: [] for mode in MODES}
        for _ in range(options.repeats):
            for mode in MODES:
                times[mode] += timed(lambda m=mode: run(m), 1)

        sys.path.insert(0, str(env.src_dir))
        numpy_kernels = importlib.import_module("mandelbrot.kernels")
        cython_kernels = importlib.import_module("mandelbrot.kernels_cy")
        re, im = args.axes()
        bands = [(p.payload["top"], p.payload["bottom"]) for p in env.app_class().plan(args)]
        counts = lambda k: [k.escape_counts(re, im[top:bottom], args.max_iter) for top, bottom in bands]  # noqa: E731
        kernel = {name: timed(lambda k=k: counts(k), 1) for name, k in (("numpy", numpy_kernels), ("cython", cython_kernels))}
        equal_counts = all((a == b).all() for a, b in zip(counts(numpy_kernels), counts(cython_kernels), strict=True))
        module_kib = round(module.stat().st_size / 1024)
        rule = cython_kernels.SQUARE_RULE
    med = {mode: statistics.median(t) for mode, t in times.items()}
    write("cython_kernels", {
        "app": "mandelbrot", "args": args.model_dump(), "pool_width": os.cpu_count() or 1,
        "build": {"seconds": round(build_s, 2), "compile_args": build_args, "module_kib": module_kib},
        "images_equal_to_mode0": {str(mode): images[mode] == images[0] for mode in MODES},
        "counts_equal_to_numpy": equal_counts, "square_rule": rule,
        "mode0": summary(times[0]), "mode1_pool": summary(times[1]),
        "mode2_cython": summary(times[2]), "mode3_cython_pool": summary(times[3]),
        "kernel_only": {"numpy_s": round(kernel["numpy"][0], 4), "cython_s": round(kernel["cython"][0], 4),
                        "cython_speedup": round(kernel["numpy"][0] / kernel["cython"][0], 3)},
        "ratios": {
            "mode2_speedup_over_mode0": round(med[0] / med[2], 3),
            "mode3_speedup_over_mode0": round(med[0] / med[3], 3),
            "mode3_speedup_over_mode1": round(med[1] / med[3], 3),
        },
    })


if __name__ == "__main__":
    main()
