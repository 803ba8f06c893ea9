# Needs: NVIDIA driver >= 525 + numba-cuda[cu12] in this Python, agi_core's deps, a C compiler; no network (cuDF: optional).
"""The device check: what the rapids bit does on a real GPU, in one command, as JSON.

    python benchmarks/gpu_check.py --quick       # a few minutes on one GPU
    python benchmarks/gpu_check.py               # the full sizes (about 6-8 minutes)
    python benchmarks/gpu_check.py --simulate    # numba's CUDA simulator, tiny sizes: what CI runs

Steps (``--skip`` names some to leave out), each in a child Python of its own, so that this
process never loads CUDA and every step starts cold:

- ``pixels``: pixels that differ between the numba.cuda kernel and NumPy / Cython (the default
  image, the test views, deep zooms, a big image against Cython), the rounding rule each uses, the
  GPU, and the compiled kernel's fused multiply-adds (PTX; SASS where nvdisasm is installed);
- ``bands``: per-band cost as agi calls the kernel (the app's bands, one call each, buffers kept
  between calls), its parts for one band (allocation, copies, launch), against Cython on one thread
  and NumPy: the ``gpu_speed`` to set for this GPU model;
- ``cold_start``: import, CUDA context and first call in a fresh process, without and then with the
  kernel's on-disk cache;
- ``gpu_tests``: ``pytest -m gpu tests/test_gpu_kernels.py``;
- ``modes``: modes 9 (``pr``) and 12 (``dr``) through agi: images equal to mode 0's, which slot ran
  which kernel on which device;
- ``dataframe``: benchmarks/dataframe.py, where cuDF imports (else skipped, with the reason).

The JSON goes to ``benchmarks/results/gpu_check-<GPU model>.json`` (``--out`` for another path);
its path is printed last. A step that fails is recorded with its error; the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
STEPS = ("pixels", "bands", "cold_start", "gpu_tests", "modes", "dataframe")

#: sizes per scale: "full" on a real GPU, "quick" within a few minutes, "tiny" for the simulator
#: (it runs each CUDA thread as Python, about 30,000 iterations a second)
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "views": {
            "default": {"width": 2000, "height": 1500},
            "seahorse": {"width": 300, "height": 200, "center_re": -0.745, "center_im": 0.113, "span": 0.01, "max_iter": 1000},
            "deep": {"width": 200, "height": 150, "center_re": -1.25066, "center_im": 0.02012, "span": 1.7e-4, "max_iter": 2000},
            "spiral": {"width": 200, "height": 150, "center_re": -0.1011, "center_im": 0.9563, "span": 0.002, "max_iter": 1500},
            "deep-boundary": {"width": 1000, "height": 1000, "center_re": -0.743643887037151, "center_im": 0.131825904205330,
                              "span": 1e-9, "max_iter": 5000},
            # 48 Mpx: against Cython only (NumPy would take minutes)
            "big": {"width": 8000, "height": 6000, "max_iter": 2000, "reference": "cython"},
        },
        "bands": {"width": 2000, "height": 1500, "bands": 48, "max_iter": 400},
        "modes": {"width": 2000, "height": 1500, "bands": 48},
        "repeats": 5,
    },
    "quick": {
        "views": {
            "default": {"width": 2000, "height": 1500},
            "seahorse": {"width": 300, "height": 200, "center_re": -0.745, "center_im": 0.113, "span": 0.01, "max_iter": 1000},
            "deep": {"width": 200, "height": 150, "center_re": -1.25066, "center_im": 0.02012, "span": 1.7e-4, "max_iter": 2000},
            "big": {"width": 4000, "height": 3000, "max_iter": 1000, "reference": "cython"},
        },
        "bands": {"width": 2000, "height": 1500, "bands": 48, "max_iter": 400},
        "modes": {"width": 1000, "height": 750, "bands": 16},
        "repeats": 3,
    },
    "tiny": {
        "views": {
            "default": {"width": 40, "height": 24, "max_iter": 50},
            "seahorse-crop": {"width": 16, "height": 8, "center_re": -0.745, "center_im": 0.113, "span": 0.0005, "max_iter": 300},
        },
        "bands": {"width": 32, "height": 24, "bands": 4, "max_iter": 40},
        "modes": {"width": 32, "height": 24, "bands": 4, "max_iter": 40},
        "repeats": 2,
    },
}

# -- the steps' child scripts: each prints one JSON line last -------------------------------------

_PIXELS = r"""
import json, re, sys, time
opts = json.loads(sys.argv[1])
sys.path.insert(0, opts["src"])
import numpy as np
from numba import cuda
from mandelbrot import kernels, kernels_gpu
from mandelbrot.app import MandelbrotArgs
try:
    from mandelbrot import kernels_cy
except ImportError:  # no C compiler or Cython on this machine: against NumPy only
    kernels_cy = None
out = {"numba_cuda": getattr(cuda, "implementation", "?"), "simulated": kernels_gpu.simulated(),
       "gpu_rule": kernels_gpu.square_rule(), "cython_rule": kernels_cy.SQUARE_RULE if kernels_cy else None,
       "why_unavailable": kernels_gpu.why_unavailable()}
if not out["simulated"]:
    try:
        device = cuda.get_current_device()
        out["device"] = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        out["compute_capability"] = list(device.compute_capability)
        out["driver_cuda_version"] = list(cuda.cudadrv.driver.driver.get_version())
    except Exception as exc:  # what numba-cuda exposes differs between versions: recorded, not fatal
        out["device_error"] = f"{type(exc).__name__}: {exc}"[:300]
views = {}
for name, view in opts["views"].items():
    view = dict(view)
    against = view.pop("reference", "numpy")
    args = MandelbrotArgs(bands=1, **view)
    re_, im = args.axes()
    kernels_gpu.escape_counts(re_[:8], im[:8], args.max_iter)  # compiled and warm
    start = time.perf_counter(); gpu = kernels_gpu.escape_counts(re_, im, args.max_iter); gpu_s = time.perf_counter() - start
    row = {"pixels": int(gpu.size), "max_iter": args.max_iter, "gpu_s": round(gpu_s, 4)}
    if kernels_cy is not None:
        start = time.perf_counter(); cython = kernels_cy.escape_counts(re_, im, args.max_iter)
        row.update(cython_s=round(time.perf_counter() - start, 4), differ_cython=int((gpu != cython).sum()))
    if against == "numpy" or kernels_cy is None and gpu.size <= 4_000_000:
        row["differ_numpy"] = int((gpu != kernels.escape_counts(re_, im, args.max_iter)).sum())
    views[name] = row
out["views"] = views
out["differing_pixels"] = sum(row.get("differ_cython", 0) + row.get("differ_numpy", 0) for row in views.values())
if not out["simulated"]:
    from mandelbrot._cuda_escape import escape
    ptx = "\n".join(escape.inspect_asm().values())
    ops = ("fma.rn.f64", "mul.rn.f64", "add.rn.f64", "mul.f64", "add.f64")  # unrounded mul/add could be contracted
    out["ptx"] = {op: len(re.findall(re.escape(op) + r"\b", ptx)) for op in ops}
    try:
        sass = "\n".join(escape.inspect_sass().values())
        out["sass"] = {op: len(re.findall(r"\b" + op + r"\b", sass)) for op in ("DFMA", "DMUL", "DADD", "FFMA")}
    except Exception as exc:  # nvdisasm is not part of numba-cuda's wheels
        out["sass_error"] = f"{type(exc).__name__}: {exc}"[:300]
print(json.dumps(out))
"""

_BANDS = r"""
import json, statistics, sys, time
opts = json.loads(sys.argv[1])
sys.path.insert(0, opts["src"])
import numpy as np
from numba import cuda
from mandelbrot import kernels, kernels_gpu
from mandelbrot.app import Mandelbrot, MandelbrotArgs
try:
    from mandelbrot import kernels_cy
except ImportError:  # no C compiler or Cython on this machine
    kernels_cy = None
args = MandelbrotArgs(**opts["size"])
re_, im = args.axes()
bands = [(p.payload["top"], p.payload["bottom"]) for p in Mandelbrot().plan(args)]
def per_band(fn):
    times = []
    for top, bottom in bands:
        start = time.perf_counter(); fn(re_, im[top:bottom], args.max_iter); times.append(time.perf_counter() - start)
    return times
start = time.perf_counter(); kernels_gpu.escape_counts(re_, im[bands[0][0]:bands[0][1]], args.max_iter)
first_call_s = time.perf_counter() - start  # context, square_rule, JIT (or the disk cache)
runs = {"gpu": [], "cython_1_thread": [], "numpy": []} if kernels_cy else {"gpu": [], "numpy": []}
if kernels_cy:
    kernels_cy.set_threads(1)  # a CPU slot under the pool bit: one thread
for _ in range(opts["repeats"]):
    runs["gpu"].append(per_band(kernels_gpu.escape_counts))
    if kernels_cy:
        runs["cython_1_thread"].append(per_band(kernels_cy.escape_counts))
runs["numpy"].append(per_band(kernels.escape_counts))  # the slow one: once
image = {kind: min(sum(times) for times in values) for kind, values in runs.items()}
out = {"bands": len(bands), "size": opts["size"], "first_call_s": round(first_call_s, 4),
       "image_s": {kind: round(s, 5) for kind, s in image.items()},
       "band_median_s": {kind: round(statistics.median([t for times in values for t in times]), 6)
                         for kind, values in runs.items()},
       "gpu_speed_vs_cython_1_thread": round(image["cython_1_thread"] / image["gpu"], 2) if kernels_cy else None,
       "gpu_speed_vs_numpy": round(image["numpy"] / image["gpu"], 2)}
# one mid-size band's parts, as a fresh call without kept buffers would pay them
top, bottom = bands[len(bands) // 2]
from mandelbrot._cuda_escape import escape
band_im = np.ascontiguousarray(im[top:bottom]); shape = (len(band_im), len(re_))
def part(fn, repeats=2 if "simulator" in cuda.jit.__module__ else 20):  # the simulator's times mean nothing
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); value = fn(); cuda.synchronize(); times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e6, 1), value
alloc_us, counts = part(lambda: cuda.device_array(shape, dtype=np.uint16))
to_device_us, d_re = part(lambda: cuda.to_device(re_))
d_im = cuda.to_device(band_im)
grid = (-(-shape[1] // 16), -(-shape[0] // 16))
rule = ("fma", "fma-neg", "plain").index(kernels_gpu.square_rule())
launch_us, _ = part(lambda: escape[grid, (16, 16)](d_re, d_im, args.max_iter, rule, counts))
pageable_us, _ = part(lambda: counts.copy_to_host())
pinned = cuda.pinned_array(shape, dtype=np.uint16)
pinned_us, _ = part(lambda: counts.copy_to_host(pinned))
out["one_band_us"] = {"rows": shape[0], "device_array": alloc_us, "to_device_re": to_device_us, "kernel_and_sync": launch_us,
                      "copy_to_host_pageable": pageable_us, "copy_to_host_pinned": pinned_us,
                      "whole_call_kept_buffers": round(out["band_median_s"]["gpu"] * 1e6, 1)}
print(json.dumps(out))
"""

_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
opts = json.loads(sys.argv[1])
sys.path.insert(0, opts["src"])
from numba import cuda
t_import = time.perf_counter()
simulated = "simulator" in cuda.jit.__module__
if not simulated:
    cuda.current_context()
t_context = time.perf_counter()
from mandelbrot import kernels_gpu
from mandelbrot.app import MandelbrotArgs
args = MandelbrotArgs(width=2000, height=1500)
re_, im = args.axes()
kernels_gpu.square_rule()
t_rule = time.perf_counter()
cols, rows = (16, 8) if simulated else (64, 32)  # the simulator runs a Python thread per pixel
kernels_gpu.escape_counts(re_[:cols], im[:rows], args.max_iter)
t_first = time.perf_counter()
kernels_gpu.escape_counts(re_[:cols], im[rows:2 * rows], args.max_iter)
t_second = time.perf_counter()
print(json.dumps({"import_numba_cuda_s": round(t_import - t0, 4), "context_s": round(t_context - t_import, 4),
                  "square_rule_s": round(t_rule - t_context, 4), "first_call_s": round(t_first - t_rule, 4),
                  "second_call_s": round(t_second - t_first, 5), "total_s": round(t_second - t0, 4)}))
"""

_MODES = r"""
import asyncio, json, sys
from pathlib import Path
from agi_core import AGI, AgiEnv
opts = json.loads(sys.argv[1])
env = AgiEnv(app="mandelbrot", apps_path=Path(opts["apps"]))
out = {}
images = {}
dr = {"workers": opts["cluster_workers"], "tls": False, "gpu_speed": opts["gpu_speed"]}
for mode, cluster in (("0", {}), ("pr", {"workers": opts["pool_workers"]}), ("dr", dr)):
    cluster = {"workers_data_path": opts["share"], **cluster}
    run = asyncio.run(AGI.run(env, mode=mode, use_cache=False, cluster=cluster, **opts["size"]))
    images[mode] = (run.out_dir / "mandelbrot.png").read_bytes()
    slots = {}
    for o in run.outcomes:
        slots.setdefault(o.slot, {"partitions": 0, "kernels": set(), "devices": set(), "notes": set()})
        slot = slots[o.slot]
        slot["partitions"] += 1; slot["kernels"].add(o.kernel); slot["devices"].add(o.device); slot["notes"].add(o.note)
    shown = {name: {k: sorted(v) if isinstance(v, set) else v for k, v in slot.items()} for name, slot in sorted(slots.items())}
    out[mode] = {"status": run.status, "duration_s": round(run.duration_s, 3), "same_image_as_mode_0": images[mode] == images["0"],
                 "slots": shown}
print(json.dumps(out))
"""

_CUDF = r"""
import json, sys
sys.path.insert(0, json.loads(sys.argv[1])["src"])
from flight_telemetry import kernels_gpu
print(json.dumps({"why_unavailable": kernels_gpu.why_unavailable()}))
"""


def _child(script: str, opts: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, json.dumps(opts)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-1500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if isinstance(result, dict):
        result["process_s"] = round(time.perf_counter() - start, 3)
    return result


def _app_copy(tmp: Path) -> tuple[Path, str]:
    """A private copy of the Mandelbrot app with its Cython kernels built; its apps folder, and
    why the kernels could not be built ("" when they were: without them, against NumPy only)."""
    sys.path.insert(0, str(ROOT))
    from agi_core.install.cython_build import build_in_place

    apps = tmp / "apps"
    shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "build"))
    try:
        build_in_place(apps / "mandelbrot_project" / "src" / "mandelbrot")
    except Exception as exc:  # noqa: BLE001 - no C compiler or Cython: the GPU is still checked against NumPy
        return apps, f"{type(exc).__name__}: {exc}"[:500]
    return apps, ""


def run_check(scale: str, simulate: bool, skip: set[str], tmp: Path) -> dict[str, Any]:
    sizes = SIZES[scale]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    limit = 120 if scale == "tiny" else 600
    apps, cython_error = _app_copy(tmp)
    src = str(apps / "mandelbrot_project" / "src")
    report: dict[str, Any] = {"steps": {}, **({"cython_error": cython_error} if cython_error else {})}

    def step(name: str, fn: Any) -> None:
        if name in skip:
            report["steps"][name] = {"skipped": "--skip"}
            return
        start = time.perf_counter()
        try:
            report["steps"][name] = fn()
        except Exception as exc:  # noqa: BLE001 - recorded: the other steps still run
            report["steps"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"gpu_check: {name} done in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    step("pixels", lambda: _child(_PIXELS, {"src": src, "views": sizes["views"]}, env, limit))
    step("bands", lambda: _child(_BANDS, {"src": src, "size": sizes["bands"], "repeats": sizes["repeats"]}, env, limit))

    def cold() -> dict[str, Any]:
        cache = tmp / "numba-cache"
        fresh = {**env, "NUMBA_CACHE_DIR": str(cache)}
        without = _child(_COLD, {"src": src}, fresh, limit)
        return {"without_cache": without, "with_cache": _child(_COLD, {"src": src}, fresh, limit),
                "cache_files": len(list(cache.rglob("*.nbi"))) if cache.exists() else 0}

    step("cold_start", cold)

    def gpu_tests() -> dict[str, Any]:
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu_kernels.py", "-q", "-rs",
                   "-p", "no:cacheprovider"]
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=limit, check=False)
        tail = done.stdout.strip().splitlines()[-8:]
        return {"exit_code": done.returncode, "summary": tail[-1] if tail else "", "output_tail": tail}

    step("gpu_tests", gpu_tests)

    def modes() -> dict[str, Any]:
        speed = report["steps"].get("bands", {}).get("gpu_speed_vs_numpy", 1.0)  # mode 12 runs NumPy on CPU slots
        workers = {"127.0.0.1": {"count": 2, "gpus": 1, "env": {"NUMBA_ENABLE_CUDASIM": "1"}}} if simulate else {"127.0.0.1": 2}
        opts = {"apps": str(apps), "share": str(tmp / "share"), "size": sizes["modes"], "pool_workers": {"127.0.0.1": 2},
                "cluster_workers": workers, "gpu_speed": max(1.0, float(speed))}
        result = _child(_MODES, opts, {**env, "XDG_STATE_HOME": str(tmp / "state")}, limit * 2)
        result["gpu_speed_used"] = opts["gpu_speed"]
        return result

    step("modes", modes)

    def dataframe() -> dict[str, Any]:
        why = _child(_CUDF, {"src": str(ROOT / "apps" / "flight_telemetry_project" / "src")}, env, limit)["why_unavailable"]
        if why:
            return {"skipped": f"cuDF cannot run here: {why}"}
        quick = ["--repeats", "1", "--flights", "16"] if scale != "full" else []
        done = subprocess.run([sys.executable, "benchmarks/dataframe.py", *quick], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=limit * 2, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip()[-1500:])
        return {"result": json.loads((RESULTS / "dataframe.json").read_text())}

    step("dataframe", dataframe)
    return report


def _gpu_model() -> str:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30, check=False)
        return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats: a few minutes")
    parser.add_argument("--simulate", action="store_true",
                        help="numba's CUDA simulator at tiny sizes (no GPU needed): what CI runs")
    parser.add_argument("--skip", default="", help=f"comma-separated steps to leave out, of: {', '.join(STEPS)}")
    parser.add_argument("--out", type=Path, help="where the JSON goes (default: benchmarks/results/gpu_check-<GPU model>.json)")
    opts = parser.parse_args(argv)
    skip = {s.strip() for s in opts.skip.split(",") if s.strip()}
    unknown = skip - set(STEPS)
    if unknown:
        parser.error(f"--skip: unknown step(s) {', '.join(sorted(unknown))}; the steps are {', '.join(STEPS)}")
    scale = "tiny" if opts.simulate else "quick" if opts.quick else "full"
    model = "" if opts.simulate else _gpu_model()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agi-gpu-check-") as tmp:
        report = run_check(scale, opts.simulate, skip, Path(tmp))
    payload = {"benchmark": "gpu_check", "when": datetime.now(UTC).isoformat(timespec="seconds"), "scale": scale,
               "simulated": opts.simulate, "gpu": model,
               "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               "seconds": round(time.perf_counter() - started, 1), **report}
    name = model.split(",")[0] if model else "simulator" if opts.simulate else "no-gpu"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    out = opts.out or RESULTS / f"gpu_check-{slug}{'-quick' if opts.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps(payload, indent=1))
    print(f"gpu_check: the JSON is in {out}")
    return out


if __name__ == "__main__":
    main()
