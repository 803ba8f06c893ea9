"""The cython bit (2) for real: compile the example's kernels with gcc and run with them."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from agi_core import AGI, AgiEnv, AgiError
from agi_core.install.cython_build import build_in_place, find_pyx, stale_pyx
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
cython = pytest.importorskip("Cython", reason="Cython is not installed")


@pytest.fixture(scope="module")
def compiled_app(tmp_path_factory):
    """A private copy of the Mandelbrot app with its kernels compiled once for this module."""
    apps = tmp_path_factory.mktemp("apps")
    shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    package = apps / "mandelbrot_project" / "src" / "mandelbrot"
    assert stale_pyx(package) == find_pyx(package)
    built = build_in_place(package)
    assert [p.name.split(".")[0] for p in built] == ["kernels_cy"]
    assert stale_pyx(package) == [] and not list(package.glob("*.c"))  # no generated C left behind
    return AgiEnv(app="mandelbrot", apps_path=apps)


@pytest.mark.parametrize("view", [{}, {"center_re": -0.745, "center_im": 0.113, "span": 0.01, "max_iter": 1000}])
def test_compiled_kernel_matches_numpy(compiled_app, view):
    import importlib
    import sys

    sys.path.insert(0, str(compiled_app.src_dir))
    try:
        kernels = importlib.import_module("mandelbrot.kernels")
        kernels_cy = importlib.import_module("mandelbrot.kernels_cy")
        args = compiled_app.app_class.Args(width=300, height=200, **view)
        re, im = args.axes()
        reference = kernels.escape_counts(re, im, args.max_iter)
        compiled = kernels_cy.escape_counts(re, im, args.max_iter)
    finally:
        sys.path.remove(str(compiled_app.src_dir))
    assert compiled.dtype == reference.dtype and compiled.shape == reference.shape
    # NumPy's complex multiply uses FMA on CPUs that have it; the kernel mirrors that, so a few
    # boundary pixels may differ only on CPUs without FMA.
    assert (compiled != reference).mean() <= 0.005


@pytest.mark.parametrize("mode", ["c", "pc"])
def test_runs_with_the_compiled_kernels_give_the_same_image(compiled_app, share, mode):
    small = {"width": 240, "height": 180, "bands": 12}
    reference = asyncio.run(AGI.run(compiled_app, mode=0, cluster={"workers_data_path": str(share)}, progress=False, **small))
    result = asyncio.run(AGI.run(compiled_app, mode=mode, cluster={"workers_data_path": str(share)}, progress=False, **small))
    record = json.loads(result.manifest.read_text())
    assert {p["kernel"] for p in record["partitions"]} == {"cython"}
    assert (result.out_dir / "mandelbrot.png").read_bytes() == (reference.out_dir / "mandelbrot.png").read_bytes()


def test_a_syntax_error_names_the_file(tmp_path):
    package = tmp_path / "broken"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "kernels_cy.pyx").write_text("def f(:\n    pass\n")
    with pytest.raises(AgiError) as info:
        build_in_place(package)
    assert "kernels_cy.pyx" in str(info.value) and info.value.fix


def test_local_run_compiles_stale_kernels_first(tmp_path, share):
    apps = tmp_path / "apps"
    shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    env = AgiEnv(app="mandelbrot", apps_path=apps)
    result = asyncio.run(AGI.run(env, mode="c", cluster={"workers_data_path": str(share)}, progress=False, width=60, height=40, bands=2))
    assert {o.kernel for o in result.outcomes} == {"cython"}
    assert stale_pyx(env.src_dir / "mandelbrot") == []
