"""The Mandelbrot kernels against what users would pick instead: Cython vs numba.njit (and the GPU), same run.

Every kernel computes the whole image of the app's default view in one call:
- ``cython_1_thread`` / ``cython_threads``: the app's compiled kernel (``kernels_cy``), on one OpenMP
  thread (as under the pool bit) and on OpenMP's default (every core, as in mode 2);
- ``numba_app_1_thread`` / ``numba_app_threads``: the app's numba kernel kind (``kernels_numba``,
  bit-exact), serial (as under the pool bit) and on numba's threads (every core, as in mode 2);
- ``njit`` / ``njit_parallel``: the per-pixel loop a numba user writes, with ``@numba.njit`` and
  with ``@numba.njit(parallel=True)`` + ``prange`` over rows (numba's default, no fastmath);
- ``gpu``: the app's numba.cuda kernel (``kernels_gpu``) on a real GPU, when there is one;
- ``numpy``: the reference kernel (timed once: it is the slow one).
The Cython module is built first into a temporary copy of the app. Kernels are warmed up (numba
compiles on the first call), then timed round-robin so that load from other work on the machine
spreads over all of them; medians are compared. Each kernel's image is compared with the reference,
pixel by pixel: the numba loops round ``z*z`` differently from NumPy, so a few pixels differ.

Usage: python benchmarks/kernels.py [--repeats 7] [--width 2000 --height 1500 --max-iter 400]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, write

from agi_core import AgiEnv
from agi_core.install.cython_build import build_in_place, compile_args, openmp_supported
from agi_core.kernels.selection import gpu_visible

ROOT = Path(__file__).resolve().parent.parent


def numba_kernels() -> tuple[Callable, Callable]:
    """The per-pixel escape-time loop as a numba user writes it: serial, and parallel over rows."""
    import numba

    def escape_counts(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
        counts = np.empty((im.size, re.size), np.uint16)
        for y in numba.prange(im.size):
            ci = im[y]
            for x in range(re.size):
                cr, zr, zi, n = re[x], 0.0, 0.0, max_iter
                for i in range(max_iter):
                    zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                    if zr * zr + zi * zi > 4.0:
                        n = i
                        break
                counts[y, x] = n
        return counts

    # prange is range in a function compiled without parallel=True
    return numba.njit(escape_counts), numba.njit(parallel=True)(escape_counts)


def gpu_kernel() -> tuple[Callable | None, str]:
    """The app's numba.cuda kernel and the GPU's name, or None and why it cannot run here."""
    if not gpu_visible():
        return None, "no NVIDIA GPU on this machine (no /dev/nvidiactl, no nvidia-smi)"
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return None, "NUMBA_ENABLE_CUDASIM is set: the simulator is for correctness, not for timing"
    module = importlib.import_module("mandelbrot.kernels_gpu")
    if not module.available():
        return None, "an NVIDIA GPU is here but numba.cuda cannot use it (is the app's gpu extra, numba-cuda, installed?)"
    from numba import cuda

    name = cuda.get_current_device().name
    return module.escape_counts, name.decode() if isinstance(name, bytes) else str(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--max-iter", type=int)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        apps = Path(tmp) / "apps"
        shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
        package = apps / "mandelbrot_project" / "src" / "mandelbrot"
        build_in_place(package)
        env = AgiEnv(app="mandelbrot", apps_path=apps)
        given = {"width": options.width, "height": options.height, "max_iter": options.max_iter}
        args = env.settings().args.model_copy(update={k: v for k, v in given.items() if v is not None})
        sys.path.insert(0, str(env.src_dir))
        reference = importlib.import_module("mandelbrot.kernels")
        cython = importlib.import_module("mandelbrot.kernels_cy")
        numba_app = importlib.import_module("mandelbrot.kernels_numba")
        re, im = args.axes()

        def on_threads(threads: int) -> Callable:
            def run(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
                cython.set_threads(threads)
                return cython.escape_counts(re, im, max_iter)
            return run

        def numba_on(threads: int) -> Callable:
            def run(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
                numba_app.set_threads(threads)
                return numba_app.escape_counts(re, im, max_iter)
            return run

        njit, njit_parallel = numba_kernels()
        kernels: dict[str, Callable] = {"cython_1_thread": on_threads(1), "cython_threads": on_threads(0),
                                        "numba_app_1_thread": numba_on(1), "numba_app_threads": numba_on(0),
                                        "njit": njit, "njit_parallel": njit_parallel}
        gpu, gpu_name = gpu_kernel()
        if gpu is not None:
            kernels["gpu"] = gpu
        numpy_s = time.perf_counter()
        expected = reference.escape_counts(re, im, args.max_iter)
        numpy_s = time.perf_counter() - numpy_s
        # First calls: numba compiles here (timed as compile_s), and every image is checked.
        first: dict[str, float] = {}
        differing: dict[str, int] = {}
        for name, kernel in kernels.items():
            start = time.perf_counter()
            counts = kernel(re, im, args.max_iter)
            first[name] = time.perf_counter() - start
            differing[name] = int((counts != expected).sum())
        times: dict[str, list[float]] = {name: [] for name in kernels}
        for _ in range(options.repeats):
            for name, kernel in kernels.items():
                start = time.perf_counter()
                kernel(re, im, args.max_iter)
                times[name].append(time.perf_counter() - start)
        cython.set_threads(0)
        pyx_args = compile_args(package / "kernels_cy.pyx")[0]
    med = {name: statistics.median(t) for name, t in times.items()}
    import numba

    iterations = int(np.minimum(expected.astype(np.int64) + 1, args.max_iter).sum())
    ratios: dict[str, Any] = {
        "numba_app_1_thread_time_over_cython_1_thread": round(med["numba_app_1_thread"] / med["cython_1_thread"], 3),
        "numba_app_threads_time_over_cython_threads": round(med["numba_app_threads"] / med["cython_threads"], 3),
        "njit_time_over_cython_1_thread": round(med["njit"] / med["cython_1_thread"], 3),
        "njit_parallel_time_over_cython_threads": round(med["njit_parallel"] / med["cython_threads"], 3),
        "njit_parallel_time_over_cython_1_thread": round(med["njit_parallel"] / med["cython_1_thread"], 3),
        "numpy_time_over_cython_threads": round(numpy_s / med["cython_threads"], 3),
        "cython_threads_speedup_over_1_thread": round(med["cython_1_thread"] / med["cython_threads"], 3),
    }
    if "gpu" in med:
        ratios["cython_threads_time_over_gpu"] = round(med["cython_threads"] / med["gpu"], 3)
        ratios["njit_parallel_time_over_gpu"] = round(med["njit_parallel"] / med["gpu"], 3)
    write("kernels", {
        "app": "mandelbrot", "args": args.model_dump(), "pixels": int(expected.size),
        "iterations": iterations,
        "ns_per_pixel_iteration": {name: round(t / iterations * 1e9, 3) for name, t in med.items()},
        "numba": numba.__version__, "numpy": np.__version__,
        "cython_compile_args": pyx_args, "openmp": openmp_supported(), "openmp_default_threads": os.cpu_count(),
        "cpu": _cpu_model(),
        "gpu": gpu_name if gpu is not None else None, "gpu_skipped": None if gpu is not None else gpu_name,
        "pixels_differing_from_numpy": differing,
        "first_call_s": {name: round(t, 4) for name, t in first.items()},
        "numpy_s": round(numpy_s, 4),
        **{name: summary(t) for name, t in times.items()},
        "ratios": ratios,
        "note": "ratios above 1 mean the second kernel (Cython, or the GPU) is faster; medians of round-robin runs",
    })


def _cpu_model() -> str:
    try:
        done = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("Model name")), "")


if __name__ == "__main__":
    main()
