"""The Mandelbrot GPU kernels (numba.cuda) give the reference image: on the CUDA simulator here, on a GPU where there is one.

numba decides between the simulator and a real GPU when ``numba.cuda`` is first imported, and a
process on a host without a GPU should not load CUDA at all, so every kernel runs in a child
Python with the environment it needs; this process never imports numba. The kernels come from a
private copy of the app whose Cython kernels are compiled once for the module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from agi_core.install.cython_build import build_in_place
from tests.conftest import ROOT

_MISSING = [name for name in ("numba", "Cython", "setuptools", "numpy") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.skipif(bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed (the examples extra): no GPU kernels to check"),
    pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")),
                       reason="no C compiler: the Cython kernels to compare with cannot be built"),
]

# Small views: the simulator runs every CUDA thread as Python, about 30,000 iterations a second.
VIEWS = {
    "overview": {"width": 40, "height": 24, "max_iter": 50},  # the whole set; blocks of 16x16 that overhang both edges
    # 16x8 pixels of the seahorse valley where 5 pixels change when z*z is not rounded as NumPy rounds it
    "seahorse-crop": {"width": 300, "height": 200, "center_re": -0.745, "center_im": 0.113, "span": 0.01, "max_iter": 1000,
                      "crop": [70, 78, 123, 139]},
    "one-pixel": {"width": 1, "height": 1, "max_iter": 20},
}
# The views of test_cython at full size, for a real GPU.
GPU_VIEWS = {
    "default": {"width": 300, "height": 200},
    "seahorse": {"width": 300, "height": 200, "center_re": -0.745, "center_im": 0.113, "span": 0.01, "max_iter": 1000},
    "deep": {"width": 200, "height": 150, "center_re": -1.25066, "center_im": 0.02012, "span": 1.7e-4, "max_iter": 2000},
    "spiral": {"width": 200, "height": 150, "center_re": -0.1011, "center_im": 0.9563, "span": 0.002, "max_iter": 1500},
}

# Child script: every view's counts from the reference, Cython and GPU kernels, saved to an .npz.
_IMAGES = r"""
import json, sys
import numpy as np
src, views, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
sys.path.insert(0, src)
from mandelbrot import kernels, kernels_cy, kernels_gpu
from mandelbrot.app import MandelbrotArgs
arrays = {}
for name, view in views.items():
    view = dict(view)
    top, bottom, left, right = view.pop("crop", [None, None, None, None])
    args = MandelbrotArgs(bands=1, **view)
    re, im = args.axes()
    re, im = re[left:right], im[top:bottom]
    for kind, module in (("reference", kernels), ("cython", kernels_cy), ("gpu", kernels_gpu)):
        arrays[f"{name}/{kind}"] = module.escape_counts(re, im, args.max_iter)
np.savez(out, **arrays)
print(json.dumps({"available": kernels_gpu.available(), "gpu_rule": kernels_gpu.square_rule(),
                  "cython_rule": kernels_cy.SQUARE_RULE, "numba_cuda_loaded": "numba.cuda" in sys.modules}))
"""


def _python(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def app_src(tmp_path_factory) -> Path:
    """A private copy of the Mandelbrot app with its Cython kernels compiled; its src folder."""
    apps = tmp_path_factory.mktemp("apps")
    shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "build"))
    src = apps / "mandelbrot_project" / "src"
    assert build_in_place(src / "mandelbrot") == [(src / "mandelbrot" / f"kernels_cy{sysconfig.get_config_var('EXT_SUFFIX')}").resolve()]
    return src


def _images(src: Path, views: dict, out: Path, env: dict[str, str]) -> tuple[dict, dict]:
    import numpy as np

    facts = json.loads(_python(_IMAGES, str(src), json.dumps(views), str(out), env=env).splitlines()[-1])
    with np.load(out) as arrays:
        return facts, {key: arrays[key] for key in arrays.files}


@pytest.fixture(scope="module")
def simulated(app_src, tmp_path_factory) -> tuple[dict, dict]:
    """Facts and counts of every view, from the three kernels, with numba.cuda on its simulator."""
    return _images(app_src, VIEWS, tmp_path_factory.mktemp("sim") / "counts.npz", {"NUMBA_ENABLE_CUDASIM": "1"})


@pytest.mark.parametrize("view", VIEWS)
def test_reference_cython_and_simulated_gpu_images_are_identical(simulated, view):
    import numpy as np

    facts, counts = simulated
    assert facts["available"], "kernels_gpu.available() is false with NUMBA_ENABLE_CUDASIM=1"
    reference, compiled, gpu = (counts[f"{view}/{kind}"] for kind in ("reference", "cython", "gpu"))
    assert gpu.dtype == reference.dtype == np.uint16 and gpu.shape == reference.shape
    assert np.array_equal(compiled, reference)
    assert np.array_equal(gpu, reference), f"{int((gpu != reference).sum())} of {gpu.size} pixels differ ({facts['gpu_rule']=})"


def test_gpu_and_cython_kernels_agree_on_how_numpy_rounds_z_squared(simulated):
    facts, _ = simulated
    assert facts["gpu_rule"] == facts["cython_rule"]


def test_simulated_gpu_follows_numpy_also_without_its_simd_loops(app_src, tmp_path):
    """With NumPy's SIMD (and so FMA) loops off, z*z rounds differently, and both kernels follow it."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    if not umath.__cpu_dispatch__:
        pytest.skip("this NumPy has no optional SIMD features to turn off")
    import numpy as np

    env = {"NUMBA_ENABLE_CUDASIM": "1", "NPY_DISABLE_CPU_FEATURES": " ".join(umath.__cpu_dispatch__)}
    facts, counts = _images(app_src, {"seahorse-crop": VIEWS["seahorse-crop"]}, tmp_path / "counts.npz", env)
    assert facts["gpu_rule"] == facts["cython_rule"] == "plain"
    assert np.array_equal(counts["seahorse-crop/gpu"], counts["seahorse-crop/reference"])


def test_exact_fma_rounds_once(app_src):
    # Loaded by path, under its own name: the module needs nothing else from its package at import.
    spec = importlib.util.spec_from_file_location("_kernels_gpu_under_test", app_src / "mandelbrot" / "kernels_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a = 1.0 + 2.0**-30
    # a*a = 1 + 2**-29 + 2**-60 exactly; rounded first, the 2**-60 is lost.
    assert module.exact_fma(a, a, -(1.0 + 2.0**-29)) == 2.0**-60
    assert a * a - (1.0 + 2.0**-29) == 0.0
    assert module.exact_fma(3.0, 0.5, -1.0) == 0.5


def test_importing_the_gpu_kernels_loads_no_numba(app_src):
    """select_kernels may import kernels_gpu on any host: numba is loaded only to run, and a missing numba means unavailable."""
    script = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "from mandelbrot import kernels_gpu\n"
              "loaded = 'numba' in sys.modules\n"
              "sys.modules['numba'] = None  # as on a host without numba\n"
              "print(loaded, kernels_gpu.available())\n")
    assert _python(script, str(app_src), env={"NUMBA_ENABLE_CUDASIM": "1"}).split() == ["False", "False"]


_PTX = r"""
import re, sys
sys.path.insert(0, sys.argv[1])
from numba import cuda, types
from numba.cuda.cudadrv.error import NvvmSupportError
import mandelbrot._cuda_escape as kernel
sig = (types.float64[::1], types.float64[::1], types.int64, types.int64, types.uint16[:, ::1])
try:  # compute capability 8.0 (A100): every CUDA 11.2-13 NVVM compiles for it
    ptx, _ = cuda.compile_ptx(kernel.escape.py_func, sig, cc=(8, 0))
except (NvvmSupportError, RuntimeError) as exc:  # no libNVVM or libdevice (CUDA toolkit) here
    if not isinstance(exc, NvvmSupportError) and "libdevice" not in str(exc):
        raise  # any other error is the kernel's
    print("NO-NVVM", " ".join(str(exc).split())[:300])
    sys.exit(0)
print(*(len(re.findall(re.escape(op) + r"\b", ptx)) for op in ("fma.rn.f64", "mul.f64", "add.f64", "sub.f64", "mul.rn.f64", "add.rn.f64")))
"""


def test_compiled_kernel_has_no_contracted_multiply_adds(app_src):
    """NVVM fuses a*b + c by default: the PTX must hold only the two FMAs the source asks for, and rounded mul/add."""
    out = _python(_PTX, str(app_src)).strip()
    if out.startswith("NO-NVVM"):
        pytest.skip(f"no CUDA toolkit (libNVVM, libdevice) here to compile the kernel to PTX: {out.removeprefix('NO-NVVM ')}")
    fused, mul, add, sub, mul_rn, add_rn = map(int, out.split())
    assert (fused, mul, add, sub) == (2, 0, 0, 0) and mul_rn > 0 and add_rn > 0, out


def _gpu_here() -> str:
    """Why the real-GPU tests cannot run here, or "" when they can (asked in a child: no CUDA in this process)."""
    from agi_core.kernels.selection import gpu_visible

    if not gpu_visible():
        return "no NVIDIA GPU on this machine (no /dev/nvidiactl, no nvidia-smi)"
    script = "from numba import cuda; print(cuda.is_available())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"})
    if done.stdout.strip() != "True":
        return f"an NVIDIA GPU is here but numba.cuda cannot use it: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    return ""


@pytest.mark.gpu
def test_real_gpu_image_equals_the_reference(app_src, tmp_path):
    import numpy as np

    reason = _gpu_here()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, "-c", _IMAGES, str(app_src), json.dumps(GPU_VIEWS), str(tmp_path / "gpu.npz")],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp_path / "gpu.npz") as counts:
        differing = {view: int((counts[f"{view}/gpu"] != counts[f"{view}/reference"]).sum()) for view in GPU_VIEWS}
    assert differing == dict.fromkeys(GPU_VIEWS, 0), f"pixels that differ on the GPU, per view: {differing}"


_RUNS = r"""
import asyncio, json, sys
from pathlib import Path
from agi_core import AGI, AgiEnv
apps, share = Path(sys.argv[1]), sys.argv[2]
env = AgiEnv(app="mandelbrot", apps_path=apps)
size = json.loads(sys.argv[3])
runs = {mode: asyncio.run(AGI.run(env, mode=mode, cluster={"workers_data_path": share}, use_cache=False, **size)) for mode in (0, 2, 8)}
images = {mode: (run.out_dir / "mandelbrot.png").read_bytes() for mode, run in runs.items()}
print(json.dumps({"same_image": images[0] == images[2] == images[8],
                  "kernels": sorted({o.kernel for o in runs[8].outcomes}), "devices": sorted({o.device for o in runs[8].outcomes})}))
"""


def test_a_mode_8_run_on_the_simulator_gives_the_images_of_modes_0_and_2(app_src, tmp_path):
    """Through the app: bands, colouring and PNG from the simulated-GPU kernels, byte for byte those of NumPy and Cython."""
    size = {"width": 48, "height": 32, "bands": 3, "max_iter": 60}
    out = _python(_RUNS, str(app_src.parent.parent), str(tmp_path / "share"), json.dumps(size), env={"NUMBA_ENABLE_CUDASIM": "1"})
    facts = json.loads(out.splitlines()[-1])
    assert facts["kernels"] == ["gpu"] and facts["devices"] == ["cuda:0 (simulator)"], facts
    assert facts["same_image"], facts


@pytest.mark.gpu
def test_real_gpu_run_in_mode_8_gives_the_mode_0_image(app_src, tmp_path):
    reason = _gpu_here()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    size = {"width": 600, "height": 400, "bands": 8}
    done = subprocess.run([sys.executable, "-c", _RUNS, str(app_src.parent.parent), str(tmp_path / "share"), json.dumps(size)],
                          env=env, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.splitlines()[-1])
    assert facts["kernels"] == ["gpu"] and facts["devices"][0].startswith("cuda"), facts
    assert facts["same_image"], facts
