"""Kernel kinds as one table (`agi_core.kernels.kinds`): the numba CPU kind for real, and a fake kind
added in one place that selection, the request's shape, the cache key and the settings form all see."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from agi_core import AGI, AgiEnv, AgiError
from agi_core.base.modes import Mode
from agi_core.kernels import kinds as kernel_kinds
from agi_core.kernels.selection import select_kernels
from agi_core.kernels.shape import ExecutionShape
from agi_core.run.request import resolve
from tests.conftest import ROOT, TEST_APPS

pytest.importorskip("numba", reason="numba not installed: the numba kernel kind cannot run here")

SMALL = {"width": 160, "height": 120, "bands": 6, "max_iter": 300}


@pytest.fixture(autouse=True)
def _own_app_modules():
    """Import this test's copies of the apps, and put sys.modules and sys.path back after."""
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
def mandelbrot_apps(tmp_path_factory) -> Path:
    """A private copy of the Mandelbrot app (numba's on-disk cache goes into its __pycache__)."""
    apps = tmp_path_factory.mktemp("apps")
    shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "build", "*.egg-info"))
    return apps


def test_the_numba_kernels_are_bit_exact_with_the_reference(mandelbrot_apps):
    sys.path.insert(0, str(mandelbrot_apps / "mandelbrot_project" / "src"))
    from mandelbrot import kernels, kernels_numba

    # the default view, a deep zoom (rounding matters at the boundary), and a row length no multiple of LANES
    views = [(np.linspace(-2.2, 0.8, 203), np.linspace(-1.2, 1.2, 61), 300),
             (np.linspace(-1.25076, -1.25056, 97), np.linspace(0.02002, 0.02022, 33), 2000)]
    for re, im, max_iter in views:
        expected = kernels.escape_counts(re, im, max_iter)
        for threads in (1, 0):  # the serial kernel (pool bit) and the one on numba's threads
            kernels_numba.set_threads(threads)
            got = kernels_numba.escape_counts(re, im, max_iter)
            assert got.dtype == np.uint16 and got.shape == expected.shape
            assert np.array_equal(got, expected), f"{int((got != expected).sum())} pixels differ (threads={threads})"
    assert kernels_numba.escape_counts(np.array([]), np.linspace(0, 1, 3), 10).shape == (3, 0)


def test_a_run_picks_numba_records_it_and_caches_under_its_own_kind(mandelbrot_apps, tmp_path):
    env = AgiEnv(app="mandelbrot", apps_path=mandelbrot_apps)
    cluster = {"workers_data_path": str(tmp_path / "share"), "compiled": "numba"}
    request = resolve(env, mode="pc", cluster=cluster)
    assert request.shape.kernels == ("numba",) and request.shape.kernel_threads == 1
    numba_run = asyncio.run(AGI.run(env, mode="pc", cluster=cluster, **SMALL))
    python_run = asyncio.run(AGI.run(env, mode="p", cluster=cluster, **SMALL))
    again = asyncio.run(AGI.run(env, mode="pc", cluster=cluster, **SMALL))
    records = [json.loads(r.manifest.read_text()) for r in (numba_run, python_run, again)]
    assert [{p["kernel"] for p in r["partitions"]} for r in records] == [{"numba"}, {"python"}, {"numba"}]
    # the python run found none of numba's entries; the second numba run found all of them
    assert [sum(p["status"] == "cached" for p in r["partitions"]) for r in records] == [0, 0, SMALL["bands"]]
    assert records[0]["request"]["shape"]["kernels"] == ["numba"]
    assert (numba_run.out_dir / "mandelbrot.png").read_bytes() == (python_run.out_dir / "mandelbrot.png").read_bytes()


def test_a_kind_added_in_one_place_is_seen_everywhere(apps_copy, monkeypatch):
    from agi_core.cache.keys import plan_keys
    from agi_core.ui.settings_form import form_fields, save_form

    fake = kernel_kinds.KernelKind("fake", "kernels_fake", 2, "c", help="a test's kernels (kernels_fake.py)")
    monkeypatch.setattr(kernel_kinds, "KINDS", (*kernel_kinds.KINDS, fake))
    package = apps_copy / "toy_project" / "src" / "toy"
    (package / "kernels_fake.py").write_text("def answer():\n    return 'fake'\n")
    env = AgiEnv(app="toy", apps_path=apps_copy)

    # settings and the request's shape: the c bit with compiled = "fake"
    request = resolve(env, mode="pc", cluster={"compiled": "fake"})
    assert request.shape.kernels == ("fake",)
    # selection: the app's kernels_fake module, told one thread per kernel (pool bit)
    sys.path.insert(0, str(package.parent))
    choice = select_kernels("toy", request.shape)
    assert (choice.kind, choice.module.answer(), choice.device) == ("fake", "fake", "cpu")
    # the cache key: the kind is one of its parts, so fake's keys are not python's
    parts = env.app_class().plan(env.app_class.Args.model_validate(request.args))
    keys = {kind: plan_keys(parts, code="c", args=request.args, kernel=kind).keys for kind in ("fake", "python")}
    assert keys["fake"].keys() == keys["python"].keys() and not set(keys["fake"].values()) & set(keys["python"].values())
    # the settings form offers it
    field = next(f for f in form_fields(env) if f.key == "cluster.compiled")
    assert field.kind == "choice:cython,numba,fake" and "kernels_fake.py" in field.help
    outcome = save_form(env, {"cluster.compiled": "fake", "cluster.cython": "on"})
    assert outcome.saved == ["cluster.cython", "cluster.compiled"], outcome
    assert resolve(AgiEnv(app="toy", apps_path=apps_copy)).shape.kernels == ("fake",)  # the saved settings' mode: c
    # and the table refuses what it does not have, naming what it has
    with pytest.raises(AgiError) as info:
        resolve(env, mode="c", cluster={"compiled": "jax"})
    assert "'jax'" in info.value.message and "'fake'" in info.value.message


def test_a_missing_compiled_kind_is_an_error_before_anything_runs(monkeypatch):
    toy = TEST_APPS / "toy_project" / "src"
    monkeypatch.syspath_prepend(str(toy))
    with pytest.raises(AgiError) as info:
        select_kernels("toy", ExecutionShape.of(Mode.CYTHON, compiled="numba"))
    assert "no kernels_numba module" in info.value.message and "agi install" in info.value.fix


def test_the_shape_reads_the_bits_once():
    assert ExecutionShape.of(Mode.parse("pr")).model_dump() == {
        "executor": "pool", "kernels": ("gpu", "python"), "pooled": True, "cluster": False, "gpu": "prefer"}
    assert ExecutionShape.of(Mode.parse("dcr"), compiled="numba", rapids="require").kernels == ("gpu", "numba")
    assert ExecutionShape.of(Mode.parse("dcr"), rapids="require").gpu == "require"
    assert ExecutionShape.of(Mode.parse("c")).builds == ("cython",)
    assert ExecutionShape.of(Mode.parse("c"), compiled="numba").builds == ("warm",)


def test_install_warms_and_doctor_checks_the_numba_kernels_in_a_hosts_python(mandelbrot_apps, monkeypatch, tmp_path):
    from agi_core.install.artifacts import ArtifactBuilder, cpu_extras
    from agi_core.install.doctor import HostChecks, _check_kernels
    from agi_core.install.host import InstallContext, warm_modules
    from agi_core.settings import ClusterSettings
    from agi_core.ssh import LocalSession

    # this host's Python stands for a venv that `agi install` made: it sees the app's source and this agi_core
    src = mandelbrot_apps / "mandelbrot_project" / "src"
    monkeypatch.setenv("PYTHONPATH", f"{src}:{ROOT}")
    env = AgiEnv(app="mandelbrot", apps_path=mandelbrot_apps)
    cluster = ClusterSettings.model_validate({"compiled": "numba"})
    shape = ExecutionShape.of(Mode.parse("dc"), compiled="numba")
    ctx = InstallContext(env, cluster, Mode.parse("dc"), ArtifactBuilder(env, tmp_path, extras=cpu_extras(shape)))
    assert warm_modules(ctx) == ("kernels_numba",)
    assert "numba>=0.60" in ctx.builder.requirements()  # the app's numba extra, on every host
    venv = str(Path(sys.executable).parent.parent)

    async def check(modes: str) -> HostChecks:
        checks = HostChecks("127.0.0.1", ["worker"])
        session = LocalSession("127.0.0.1")
        context = InstallContext(env, cluster, Mode.parse(modes), ctx.builder)
        if modes == "dc":
            warmed = await session.run(f"{venv}/bin/python -m agi_core.install.warm mandelbrot kernels_numba", what="warm")
            assert warmed.stdout.strip() == "mandelbrot.kernels_numba compiled"
        await _check_kernels(session, checks, context, venv)
        return checks

    ok = asyncio.run(check("dc"))
    assert [(c.name, c.ok) for c in ok.checks] == [("numba kernels", True)]
    (src / "mandelbrot" / "kernels_numba.py").rename(src / "mandelbrot" / "kernels_numba.off")  # a host without the module
    try:
        checks = HostChecks("127.0.0.1", ["worker"])
        asyncio.run(_check_kernels(LocalSession("127.0.0.1"), checks, ctx, venv))
    finally:
        (src / "mandelbrot" / "kernels_numba.off").rename(src / "mandelbrot" / "kernels_numba.py")
    assert [(c.name, c.ok) for c in checks.checks] == [("numba kernels", False)]
    assert "does not import" in checks.checks[0].detail and checks.checks[0].fix == "agi install mandelbrot --modes cd"
