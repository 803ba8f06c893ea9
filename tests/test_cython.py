"""The cython bit (2) for real: compile the example's kernels with the host's C compiler and run with them.

Every build goes into a copy of an app under tmp_path, so the repository stays clean and tests
running at the same time do not race. The Mandelbrot kernels are compiled once for the module.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv, AgiError
from agi_core.base.modes import Mode
from agi_core.install.cython_build import (
    COMPILE_ARGS,
    OPENMP_ARGS,
    build_in_place,
    compile_args,
    find_pyx,
    openmp_supported,
    stale_pyx,
)
from agi_core.kernels.selection import select_kernels
from tests.conftest import ROOT, TEST_APPS

_MISSING = [name for name in ("Cython", "setuptools", "numpy") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")),
                       reason="no C compiler (cc, gcc or clang) on this machine: the cython bit cannot build kernels"),
    pytest.mark.skipif(bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed: the cython bit cannot build kernels here"),
]

EXT = sysconfig.get_config_var("EXT_SUFFIX")
SMALL = {"width": 240, "height": 180, "bands": 12}
VIEWS = {
    "default": {"width": 300, "height": 200},
    "odd-size": {"width": 257, "height": 131},  # row lengths that are no multiple of a SIMD width
    "seahorse": {"width": 300, "height": 200, "center_re": -0.745, "center_im": 0.113, "span": 0.01, "max_iter": 1000},
    "deep": {"width": 200, "height": 150, "center_re": -1.25066, "center_im": 0.02012, "span": 1.7e-4, "max_iter": 2000},
    "spiral": {"width": 200, "height": 150, "center_re": -0.1011, "center_im": 0.9563, "span": 0.002, "max_iter": 1500},
}


def _copy_app(apps: Path, project: Path) -> Path:
    shutil.copytree(project, apps / project.name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "build", "*.egg-info"))
    return apps / project.name


@pytest.fixture(autouse=True)
def _own_app_modules():
    """Import this test's copies of the apps, not ones an earlier test imported, and put things back after."""
    def ours(name: str) -> bool:
        return name.split(".")[0] in ("mandelbrot", "toy")

    saved_path = list(sys.path)
    saved = {name: sys.modules.pop(name) for name in [n for n in sys.modules if ours(n)]}
    yield
    for name in [n for n in sys.modules if ours(n)]:
        del sys.modules[name]
    sys.modules.update(saved)
    sys.path[:] = saved_path


@pytest.fixture(scope="module")
def compiled_app(tmp_path_factory) -> Path:
    """A private copy of the Mandelbrot app with its kernels compiled once for this module; its apps folder."""
    apps = tmp_path_factory.mktemp("apps")
    package = _copy_app(apps, ROOT / "apps" / "mandelbrot_project") / "src" / "mandelbrot"
    before = {p.name for p in package.iterdir()}
    assert stale_pyx(package) == find_pyx(package) == [package / "kernels_cy.pyx"]
    built = build_in_place(package)
    assert built == [package.resolve() / f"kernels_cy{EXT}"]
    assert {p.name for p in package.iterdir()} == before | {f"kernels_cy{EXT}"}  # no generated C or objects left behind
    assert stale_pyx(package) == []
    return apps


def _kernels(apps: Path):
    sys.path.insert(0, str(apps / "mandelbrot_project" / "src"))
    reference, compiled = importlib.import_module("mandelbrot.kernels"), importlib.import_module("mandelbrot.kernels_cy")
    assert Path(compiled.__file__).is_relative_to(apps)
    return reference, compiled


@pytest.mark.parametrize("view", VIEWS.values(), ids=VIEWS.keys())
def test_compiled_kernel_gives_numpys_counts_bit_for_bit(compiled_app, view):
    import numpy as np

    reference, compiled = _kernels(compiled_app)
    args = AgiEnv(app="mandelbrot", apps_path=compiled_app).app_class.Args(bands=1, **view)
    re, im = args.axes()
    expected = reference.escape_counts(re, im, args.max_iter)
    got = compiled.escape_counts(re, im, args.max_iter)
    assert got.dtype == expected.dtype == np.uint16 and got.shape == expected.shape == (args.height, args.width)
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} of {got.size} pixels differ ({compiled.SQUARE_RULE=})"


def test_the_kernel_knows_how_this_numpy_rounds_z_squared(compiled_app):
    _, compiled = _kernels(compiled_app)
    assert compiled.MATCHES_NUMPY, "NumPy's complex z*z follows none of fma(zr,zr,-zi*zi), fma(-zi,zi,zr*zr), zr*zr-zi*zi here"
    assert compiled.SQUARE_RULE in ("fma", "fma-neg", "plain")


def test_bit_for_bit_also_when_numpy_runs_without_its_simd_loops(compiled_app):
    """NumPy without FMA (older CPUs, or its SIMD dispatch turned off) rounds z*z differently; the kernel follows it."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    if not umath.__cpu_dispatch__:
        pytest.skip("this NumPy has no optional SIMD features to turn off")
    script = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1])\n"
        "from mandelbrot import kernels, kernels_cy\n"
        "re = np.linspace(-0.75, -0.74, 300); im = np.linspace(0.118, 0.108, 200)\n"
        "a, b = kernels.escape_counts(re, im, 1000), kernels_cy.escape_counts(re, im, 1000)\n"
        "print(kernels_cy.SQUARE_RULE, int((a != b).sum()))\n"
    )
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(umath.__cpu_dispatch__)}
    done = subprocess.run([sys.executable, "-c", script, str(compiled_app / "mandelbrot_project" / "src")],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rule, differing = done.stdout.split()
    assert differing == "0", f"{differing} pixels differ with NumPy's SIMD loops off (rule {rule})"


def test_rows_on_any_number_of_threads_give_the_same_counts(compiled_app):
    import numpy as np

    reference, compiled = _kernels(compiled_app)
    args = AgiEnv(app="mandelbrot", apps_path=compiled_app).app_class.Args(bands=1, **VIEWS["seahorse"])
    re, im = args.axes()
    expected = reference.escape_counts(re, im, args.max_iter)
    try:
        for threads in (1, 3, 0):  # 3: more threads than this machine may have cores
            compiled.set_threads(threads)
            assert np.array_equal(compiled.escape_counts(re, im, args.max_iter), expected), f"{threads=}"
        with pytest.raises(ValueError, match="threads must be 0"):
            compiled.set_threads(-1)
    finally:
        compiled.set_threads(0)
    # strided and non-float64 inputs are taken as the NumPy kernel takes them
    assert np.array_equal(compiled.escape_counts(re[::2], im[::3].astype(np.float32).astype(np.float64), 50),
                          reference.escape_counts(re[::2], im[::3], 50))
    assert compiled.escape_counts(re[:0], im, 10).shape == (len(im), 0)


def test_the_pool_bit_gives_the_kernel_one_thread(compiled_app):
    """A partition per core already: OpenMP threads inside each would oversubscribe the cores."""
    _, compiled = _kernels(compiled_app)
    assert select_kernels("mandelbrot", Mode(3)).module is compiled and compiled.get_threads() == 1
    assert select_kernels("mandelbrot", Mode(2)).module is compiled and compiled.get_threads() == 0


def test_kernels_with_prange_are_built_with_openmp_where_the_compiler_has_it(compiled_app, tmp_path):
    pyx = compiled_app / "mandelbrot_project" / "src" / "mandelbrot" / "kernels_cy.pyx"
    plain = tmp_path / "plain.pyx"
    plain.write_text("def f(int i):\n    return i\n")
    assert compile_args(plain) == ([*COMPILE_ARGS], [])
    if not openmp_supported():
        assert compile_args(pyx) == ([*COMPILE_ARGS], []), "without OpenMP the prange loops build, and run in order"
        pytest.skip("this C compiler has no OpenMP (-fopenmp)")
    assert compile_args(pyx) == ([*COMPILE_ARGS, *OPENMP_ARGS], [*OPENMP_ARGS])
    module = pyx.with_name(f"kernels_cy{EXT}")
    linked = subprocess.run(["ldd", str(module)], capture_output=True, text=True, check=False).stdout
    assert "libgomp" in linked or "libomp" in linked, linked


@pytest.mark.parametrize("mode", ["c", "pc"])
def test_runs_with_the_compiled_kernels_give_the_same_image(compiled_app, tmp_path, mode):
    cluster = {"workers_data_path": str(tmp_path / "share")}
    env = AgiEnv(app="mandelbrot", apps_path=compiled_app)
    reference = asyncio.run(AGI.run(env, mode=0, cluster=cluster, **SMALL))
    result = asyncio.run(AGI.run(env, mode=mode, cluster=cluster, **SMALL))
    record = json.loads(result.manifest.read_text())
    assert len(record["partitions"]) == SMALL["bands"]
    assert {p["kernel"] for p in record["partitions"]} == {"cython"}
    assert {p["kernel"] for p in json.loads(reference.manifest.read_text())["partitions"]} == {"python"}
    assert (result.out_dir / "mandelbrot.png").read_bytes() == (reference.out_dir / "mandelbrot.png").read_bytes()


def test_a_syntax_error_names_the_file(tmp_path):
    package = tmp_path / "broken"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "kernels_cy.pyx").write_text("def f(:\n    pass\n")
    with pytest.raises(AgiError) as info:
        build_in_place(package)
    assert "kernels_cy.pyx" in info.value.message and "Cython" in info.value.message and "kernels_cy.pyx" in info.value.fix
    assert not [p.name for p in package.iterdir() if p.suffix in (".c", ".so")]
    # The installer's entry point says the same on stderr and exits 1.
    done = subprocess.run([sys.executable, "-m", "agi_core.install.cython_build", str(package)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 1 and "kernels_cy.pyx" in done.stderr and "fix:" in done.stderr and done.stdout == ""


def test_a_package_without_pyx_builds_nothing(tmp_path):
    assert build_in_place(tmp_path) == [] and find_pyx(tmp_path / "missing") == []


def test_installer_entry_point_then_local_runs_reuse_or_rebuild(tmp_path):
    """`python -m agi_core.install.cython_build DIR` prints the built files; a local run reuses them until the .pyx changes."""
    apps = tmp_path / "apps"
    package = _copy_app(apps, TEST_APPS / "toy_project") / "src" / "toy"
    (package / "kernels_cy.pyx").write_text("def square(long i):\n    return i * i\n")
    done = subprocess.run([sys.executable, "-m", "agi_core.install.cython_build", str(package)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [str(package.resolve() / f"kernels_cy{EXT}")] and done.stderr == ""
    module = package / f"kernels_cy{EXT}"
    built_at = module.stat().st_mtime_ns

    env = AgiEnv(app="toy", apps_path=apps)
    cluster = {"workers_data_path": str(tmp_path / "share")}
    result = asyncio.run(AGI.run(env, mode="c", cluster=cluster, n=3))
    assert {o.kernel for o in result.outcomes} == {"cython"} and module.stat().st_mtime_ns == built_at  # reused

    later = built_at + 10**9
    os.utime(package / "kernels_cy.pyx", ns=(later, later))
    assert stale_pyx(package) == [package / "kernels_cy.pyx"]
    asyncio.run(AGI.run(AgiEnv(app="toy", apps_path=apps), mode="c", cluster=cluster, n=3))
    assert stale_pyx(package) == [] and module.stat().st_mtime_ns != built_at  # rebuilt before the run


def test_cython_bit_on_a_local_cluster_compiles_for_its_workers(tmp_path, share, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    apps = tmp_path / "apps"
    _copy_app(apps, ROOT / "apps" / "mandelbrot_project")
    env = AgiEnv(app="mandelbrot", apps_path=apps)
    result = asyncio.run(AGI.run(env, mode="dc", cluster={"workers_data_path": str(share), "workers": {"127.0.0.1": 2}},
                                 width=80, height=60, bands=4))
    record = json.loads(result.manifest.read_text())
    assert {p["kernel"] for p in record["partitions"]} == {"cython"} and record["executor"] == "dask"


def test_verbose_build_says_each_module_and_the_compiler_commands_on_stderr(tmp_path):
    """What `agi install` streams into each host's log (`HostOutput`): stdout stays the JSON list."""
    package = tmp_path / "verbose_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "kernels_cy.pyx").write_text("def square(long i):\n    return i * i\n")
    done = subprocess.run([sys.executable, "-m", "agi_core.install.cython_build", "--verbose", str(package)], capture_output=True,
                          text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [str(package.resolve() / f"kernels_cy{EXT}")]
    lines = done.stderr.splitlines()
    assert lines[0] == "compiling kernels_cy.pyx (verbose_pkg.kernels_cy)"
    assert any("Cythonizing" in line for line in lines) and any(" -shared " in line for line in lines)  # Cython, then the link
