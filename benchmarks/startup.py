"""The whole `agi run` process in mode 0 on a plan of one tiny partition.

Baselines measured in the same run: a bare interpreter, and a plain Python script that imports
what the example app imports (numpy, Pillow) and renders the same tiny image by hand.

Wall-clock times swing with the machine's load (other processes on a shared machine); the CPU
time of each process (user + system, its children included: ``git status``) is recorded beside
them and gives the steadier ratio there.

Usage: python benchmarks/startup.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, timed, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PLAIN = """
import sys
sys.path.insert(0, {src!r})
from pathlib import Path
from mandelbrot.app import MandelbrotArgs, shades, write_png
from mandelbrot.kernels import escape_counts
args = MandelbrotArgs(width=16, height=16, bands=1)
re, im = args.axes()
write_png(shades(escape_counts(re, im, args.max_iter), args.max_iter), Path({out!r}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as share:
        agi = [sys.executable, "-m", "agi_core.cli", "run", "mandelbrot", "--mode", "0", "--no-progress", "--no-cache",
               "--set", "width=16", "--set", "height=16", "--set", "bands=1", "--set", f'cluster.workers_data_path="{share}"']
        plain = [sys.executable, "-c", PLAIN.format(src=str(ROOT / "apps/mandelbrot_project/src"), out=f"{share}/plain.png")]
        bare = [sys.executable, "-c", "pass"]
        cpu: dict[str, list[float]] = {"agi": [], "plain": [], "bare": []}

        def run(name: str, cmd: list[str]) -> None:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

        run("agi", agi)  # warm the file cache
        cpu["agi"].clear()
        # Interleaved, so a change in the machine's load during the benchmark hits all three alike.
        agi_times, plain_times, bare_times = [], [], []
        for _ in range(options.repeats):
            agi_times += timed(lambda: run("agi", agi), 1)
            plain_times += timed(lambda: run("plain", plain), 1)
            bare_times += timed(lambda: run("bare", bare), 1)
    a, p = summary(agi_times), summary(plain_times)
    ca, cp = summary(cpu["agi"]), summary(cpu["plain"])
    write("startup", {
        "command": "agi run mandelbrot --mode 0 (one 16x16 partition)",
        "agi_run": a, "plain_script": p, "bare_python": summary(bare_times),
        "cpu": {"agi_run": ca, "plain_script": cp, "bare_python": summary(cpu["bare"])},
        "ratios": {"agi_over_plain_script": round(a["median_s"] / p["median_s"], 3),
                   "agi_over_plain_script_cpu": round(ca["median_s"] / cp["median_s"], 3),
                   "agi_over_plain_script_min": round(a["min_s"] / p["min_s"], 3)},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        # Compiled bytecode changes both sides a lot where PYTHONDONTWRITEBYTECODE is set (this
        # machine): compare ratios only between runs with the same setting and caches.
        "bytecode_writing_disabled": bool(sys.flags.dont_write_bytecode),
    })


if __name__ == "__main__":
    main()
