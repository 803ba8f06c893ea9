"""The device check (benchmarks/gpu_check.py) runs green on numba's CUDA simulator at tiny sizes,
so the command a GPU session runs cannot rot: every step answers, the pixels match, and modes pr
and dr place GPU and CPU kernels as planned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler: the Cython kernels cannot be built")


@pytest.mark.slow
def test_the_device_check_runs_on_the_simulator(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--simulate", "--skip", "gpu_tests", "--out", str(out)],
                          cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == f"gpu_check: the JSON is in {out}"
    report = json.loads(out.read_text())
    steps = report["steps"]
    assert report["simulated"] and not [name for name, step in steps.items() if "error" in step], steps
    pixels = steps["pixels"]
    assert pixels["simulated"] and pixels["differing_pixels"] == 0 and pixels["gpu_rule"] == pixels["cython_rule"], pixels
    assert set(steps["bands"]) >= {"gpu_speed_vs_numpy", "gpu_speed_vs_cython_1_thread", "one_band_us", "band_median_s"}
    assert set(steps["cold_start"]["with_cache"]) >= {"import_numba_cuda_s", "context_s", "first_call_s"}
    assert steps["gpu_tests"] == {"skipped": "--skip"}
    modes = steps["modes"]
    assert all(modes[mode]["status"] == "ok" and modes[mode]["same_image_as_mode_0"] for mode in ("pr", "dr")), modes
    # dr: the worker that owns the (simulated) GPU runs the GPU kernels, the other the CPU ones, as planned
    assert [slot["kernels"] for slot in modes["dr"]["slots"].values()] == [["gpu"], ["python"]], modes["dr"]
    assert "skipped" in steps["dataframe"] or "result" in steps["dataframe"]
