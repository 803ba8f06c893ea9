"""Every bundled app's GPU target locks: what `agi install` resolves for a GPU host with the rapids
bit (agi's and the app's dependencies, the app's ``gpu`` extra, pinned to the manager's Dask stack,
NumPy and pandas), with the same ``uv pip compile`` options. uv needs the package index only, no
GPU. Wheels only: a release published as a build-time stub (cudf-cu12 24.10) must not be chosen."""

from __future__ import annotations

import subprocess

import pytest

from agi_core import AgiEnv
from agi_core.install.artifacts import ArtifactBuilder, Target, uv_binary
from agi_core.settings.loading import read_toml
from tests.conftest import ROOT

GPU_APPS = sorted(p.parent.name.removesuffix("_project") for p in (ROOT / "apps").glob("*_project/pyproject.toml")
                  if read_toml(p).get("project", {}).get("optional-dependencies", {}).get("gpu"))
#: an H100 host: CPython 3.11 on x86_64, glibc 2.35 (Ubuntu 22.04)
GPU_HOST = Target("3.11", "x86_64", (2, 35), gpu=True)


def _index_reachable() -> str:
    """Why PyPI cannot be asked here, or ""."""
    done = subprocess.run([str(uv_binary()), "pip", "compile", "--no-cache", "--no-header", "-"], input="six\n",
                          capture_output=True, text=True, timeout=120, check=False)
    return "" if done.returncode == 0 else f"the package index is not reachable: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def index() -> None:
    reason = _index_reachable()
    if reason:
        pytest.skip(reason)


def test_the_bundled_apps_with_gpu_kernels_have_a_gpu_extra():
    assert GPU_APPS == ["flight_telemetry", "mandelbrot"]


@pytest.mark.slow
@pytest.mark.parametrize("app", GPU_APPS)
def test_the_gpu_target_of_each_bundled_app_locks_to_real_wheels(app, index, tmp_path):
    builder = ArtifactBuilder(AgiEnv(app=app, apps_path=ROOT / "apps"), tmp_path / "cache")
    requirements, constraints = tmp_path / "requirements.in", tmp_path / "constraints.txt"
    requirements.write_text("\n".join(builder.requirements(GPU_HOST)) + "\n")
    constraints.write_text("\n".join(builder.constraints()) + "\n")
    done = subprocess.run([str(uv_binary()), "pip", "compile", "-q", str(requirements), "-c", str(constraints),
                           *builder.lock_options(GPU_HOST), "--python-version", GPU_HOST.python,
                           "--python-platform", GPU_HOST.uv_platform(), "--no-header", "--no-annotate"],
                          capture_output=True, text=True, timeout=300, check=False)
    pins = ", ".join(builder.constraints())
    assert done.returncode == 0, f"{app}'s GPU target does not lock with the manager's pins ({pins}):\n{done.stderr[-2000:]}"
    pinned = dict(line.split("==", 1) for line in done.stdout.splitlines() if "==" in line)
    gpu_package = {"mandelbrot": "numba-cuda", "flight_telemetry": "cudf-cu12"}[app]
    assert gpu_package in pinned, sorted(pinned)
    if app == "flight_telemetry":  # a release with real wheels, not the 24.10 stub
        assert (26, 2) <= tuple(int(x) for x in pinned["cudf-cu12"].split(".")[:2]) < (26, 12), pinned["cudf-cu12"]
