"""The Mandelbrot app at a size where mode 0 takes about 10 s: modes 0, 2 and 3, and 8 with a GPU, same run.

- mode 0: NumPy kernels, every band in this process;
- mode 2: the Cython kernels, every band in this process, rows on OpenMP threads (every core);
- mode 3: the Cython kernels under the pool bit: a process per core, one thread each;
- mode 8: the numba.cuda kernels, when this machine has a GPU that numba.cuda can use; without
  one, mode 8 would run the CPU kernels, so it is left out and the JSON says why.
The Cython module is built first into a temporary copy of the app. Each mode runs once on a tiny
image (imports, forks, the GPU's JIT), then the modes are timed round-robin (0, 2, 3, 0, ...) so
that load from other work spreads over all of them; medians are compared. Every run's image is
checked to be byte-identical to mode 0's.

Usage: python benchmarks/mandelbrot_modes.py [--repeats 3] [--width 4000 --height 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, write

from agi_core import AGI, AgiEnv
from agi_core.install.cython_build import build_in_place
from agi_core.kernels.selection import gpu_visible

ROOT = Path(__file__).resolve().parent.parent
# 4x the default image: mode 0 takes ~9-10 s on one core of a 2020s x86-64 server
SIZE = {"width": 4000, "height": 3000, "max_iter": 400, "bands": 48}


def gpu_usable(src: Path) -> str:
    """Why mode 8 cannot run on a GPU here, or "" when it can (asked in a child: no CUDA in this process)."""
    if not gpu_visible():
        return "no NVIDIA GPU on this machine (no /dev/nvidiactl, no nvidia-smi): mode 8 would run the CPU kernels"
    if importlib.util.find_spec("numba") is None:
        return "numba (the app's gpu extra: numba-cuda) is not installed"
    script = f"import sys; sys.path.insert(0, {str(src)!r}); from mandelbrot import kernels_gpu; print(kernels_gpu.available())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False,
                          env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"})
    return "" if done.stdout.strip() == "True" else f"numba.cuda cannot use the GPU here: {done.stderr.strip()[-300:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=SIZE["width"])
    parser.add_argument("--height", type=int, default=SIZE["height"])
    options = parser.parse_args()
    size = {**SIZE, "width": options.width, "height": options.height}
    with tempfile.TemporaryDirectory() as tmp:
        apps = Path(tmp) / "apps"
        shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
        build_in_place(apps / "mandelbrot_project" / "src" / "mandelbrot")
        env = AgiEnv(app="mandelbrot", apps_path=apps)
        gpu_skipped = gpu_usable(env.src_dir)
        modes = (0, 2, 3) if gpu_skipped else (0, 2, 3, 8)
        cluster = {"workers_data_path": f"{tmp}/share"}

        def run(mode: int, **args: int) -> tuple[float, bytes, set[str]]:
            start = time.perf_counter()
            result = asyncio.run(AGI.run(env, mode=mode, cluster=cluster, use_cache=False, **args))
            seconds = time.perf_counter() - start
            return seconds, (result.out_dir / "mandelbrot.png").read_bytes(), {o.kernel for o in result.outcomes}

        for mode in modes:
            run(mode, width=64, height=48, bands=4)  # warm-up
        times: dict[int, list[float]] = {mode: [] for mode in modes}
        images: dict[int, list[bytes]] = {mode: [] for mode in modes}
        kernels: dict[int, set[str]] = {mode: set() for mode in modes}
        for _ in range(options.repeats):
            for mode in modes:
                seconds, image, kinds = run(mode, **size)
                times[mode].append(seconds)
                images[mode].append(image)
                kernels[mode] |= kinds
    med = {mode: statistics.median(t) for mode, t in times.items()}
    reference = images[0][0]
    ratios = {f"mode{mode}_speedup_over_mode0": round(med[0] / med[mode], 3) for mode in modes if mode}
    ratios["mode2_speedup_over_mode3"] = round(med[3] / med[2], 3)
    write("mandelbrot_modes", {
        "app": "mandelbrot", "args": size, "cores": os.cpu_count(),
        "modes": {str(mode): {**summary(times[mode]), "kernels": sorted(kernels[mode]),
                              "images_equal_to_mode0": all(image == reference for image in images[mode])} for mode in modes},
        "mode8_skipped": gpu_skipped or None,
        "ratios": ratios,
    })


if __name__ == "__main__":
    main()
