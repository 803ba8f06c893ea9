"""The heat example app (apps/heat_project): a DAG sweep of 2-D heat diffusion, run for real."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from agi_core import AGI, AgiEnv, WorkContext

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "apps"
SMALL = {"sizes": [12, 16], "alphas": [1.0, 1.5, 2.0], "t_end": 0.2, "samples": 50}


def heat_env() -> AgiEnv:
    return AgiEnv(app="heat", apps_path=APPS)


def heat_module(name: str):
    """A module of the heat package, imported from the app's src/ (as the manager does)."""
    import importlib

    _ = heat_env().app_class  # loading it puts apps/heat_project/src first on sys.path
    return importlib.import_module(f"heat.{name}")


def run(share: Path, **kwargs):
    return asyncio.run(AGI.run(heat_env(), cluster={"workers_data_path": str(share)}, **kwargs))


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory):
    """The default sweep, once in mode 0 and once with the pool bit (two worker processes)."""
    # one share each: the second run must compute, not find the first one's results in the cache
    runs = {0: run(tmp_path_factory.mktemp("share0"), mode=0),
            "p": run(tmp_path_factory.mktemp("share1"), mode="p", workers={"127.0.0.1": 2})}
    assert all(o.status == "ok" for r in runs.values() for o in r.outcomes)  # computed, none cached
    return runs


def kinds(pid: str) -> str:
    return pid if pid in ("setup", "summary") else pid.split("-")[0]


# -- the plan -------------------------------------------------------------------------------------


def test_plan_is_setup_then_sims_then_analyses_then_summary():
    sim_id, stable_dt = heat_module("app").sim_id, heat_module("kernels").stable_dt

    args = heat_env().app_class.Args()
    plan = asyncio.run(AGI.get_distrib(heat_env(), mode=0))
    parts = {p.id: p for p in plan.partitions}
    count = {k: sum(kinds(pid) == k for pid in parts) for k in ("setup", "sim", "analysis", "summary")}
    assert count == {"setup": 1, "sim": len(args.sizes) * len(args.alphas), "analysis": len(args.sizes), "summary": 1}
    assert parts["setup"].deps == ()
    for n in args.sizes:
        sims = tuple(sim_id(n, a) for a in args.alphas)
        assert all(parts[s].deps == ("setup",) and parts[s].payload == {"size": n, "alpha": a} for s, a in zip(sims, args.alphas))
        assert parts[f"analysis-{n}"].deps == sims
    assert parts["summary"].deps == tuple(f"analysis-{n}" for n in args.sizes)
    # acyclic, and every dependency comes first in the plan's order
    seen: set[str] = set()
    for p in plan.partitions:
        assert set(p.deps) <= seen, p.id
        seen.add(p.id)
    # simulation weights are cells x steps: they grow with size and alpha
    for n in args.sizes:
        for a in args.alphas:
            _, steps = stable_dt(1 / (n + 1), a, 1.0, args.t_end, args.cfl)
            assert parts[sim_id(n, a)].weight == n * n * steps
    sims = [p for p in plan.partitions if kinds(p.id) == "sim"]
    assert max(sims, key=lambda p: p.weight).id == sim_id(max(args.sizes), max(args.alphas))


def test_the_plan_grows_with_the_sweep():
    plan = asyncio.run(AGI.get_distrib(heat_env(), mode=0, sizes=[8, 16, 24, 32], alphas=[0.5, 1.0]))
    assert len(plan.partitions) == 1 + 8 + 4 + 1


def test_every_partition_declares_reads_that_are_args():
    fields = set(heat_env().app_class.Args.model_fields)
    plan = asyncio.run(AGI.get_distrib(heat_env(), mode=0))
    for p in plan.partitions:
        assert p.reads is not None, p.id
        assert set(p.reads) <= fields, (p.id, set(p.reads) - fields)
    reads = {kinds(p.id): set(p.reads) for p in plan.partitions}
    assert reads["analysis"] == {"fit_window"} and reads["summary"] == {"title"}  # refit / redraw without re-simulating
    assert not reads["sim"] & {"sizes", "alphas", "title", "fit_window"}  # adding an alpha keeps the other sims


class Recording:
    """Args that note which fields are read."""

    def __init__(self, args):
        self._args, self.read = args, set()

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(self._args, name)


@pytest.mark.parametrize("extra", [{}, {"inclusion_conductivity": 0.3}])
def test_work_reads_exactly_the_declared_args(tmp_path, extra):
    kernels = heat_module("kernels")
    env = heat_env()
    app = env.app_class()
    args = app.Args(**SMALL, **extra)
    results = {}
    for part in app.plan(args):
        recording = Recording(args)
        ctx = WorkContext(args=recording, kernels=kernels, kernel_kind="python", device="cpu", out_dir=tmp_path,
                          log=logging.getLogger("heat-test"), deps={d: results[d] for d in part.deps})
        results[part.id] = app.work(part, ctx)
        assert recording.read == set(part.reads), part.id


# -- real runs --------------------------------------------------------------------------------------


def test_mode_0_and_pool_give_the_same_results(default_runs):
    zero, pool = default_runs[0], default_runs["p"]
    assert zero.status == pool.status == "ok"
    assert len({o.slot for o in pool.outcomes}) == 2  # the pool really used two worker processes
    assert zero.value == pool.value
    assert sorted(zero.results) == sorted(pool.results)
    for pid, result in zero.results.items():
        if kinds(pid) == "sim":
            other = pool.results[pid]
            for key in ("t", "heat", "peak", "outflow", "field"):
                assert np.array_equal(result[key], other[key]), (pid, key)
    assert (zero.out_dir / "heat_summary.csv").read_bytes() == (pool.out_dir / "heat_summary.csv").read_bytes()


@pytest.mark.parametrize("mode", [0, "p"])
def test_outputs_exist_and_are_recorded(default_runs, mode):
    from PIL import Image

    result = default_runs[mode]
    args = heat_env().app_class.Args()
    assert result.value == result.results["summary"]
    assert result.value["files"] == ["heat_summary.png", "heat_summary.csv"]
    with Image.open(result.out_dir / "heat_summary.png") as image:
        assert image.format == "PNG" and image.size[0] > 500
    with open(result.out_dir / "heat_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(args.sizes) * len(args.alphas)
    assert {(int(r["size"]), float(r["alpha"])) for r in rows} == {(n, a) for n in args.sizes for a in args.alphas}
    record = json.loads(result.manifest.read_text())
    outputs = {p["id"]: p.get("outputs", []) for p in record["partitions"]}
    assert sorted(outputs.pop("summary")) == ["heat_summary.csv", "heat_summary.png"]
    assert not any(outputs.values())  # only the summary writes files


def test_physics_is_sane(default_runs):
    result = default_runs[0]
    value = result.value
    args = heat_env().app_class.Args()
    assert value["problems"] == []
    assert value["max_balance_error"] < 1e-12  # heat(0) - heat(t) == what left through the walls
    for n in args.sizes:
        sims = [result.results[f"sim-{n}-{a!r}"] for a in args.alphas]
        for sim in sims:
            assert np.all(np.diff(sim["heat"]) <= 0)  # cold walls: the total heat only decreases
            assert np.all(np.diff(sim["peak"]) <= 0)  # maximum principle: no new hot spots
            assert sim["dt"] <= (1 / (n + 1)) ** 2 / (4 * sim["alpha"])  # stable step
        left = [sim["heat"][-1] / sim["heat"][0] for sim in sims]
        assert left == sorted(left, reverse=True) and left[0] > left[-1]  # faster decay for larger alpha
        rates = value["rates_by_size"][str(n)]
        assert all(b > a for a, b in itertools.pairwise(rates))  # the fitted rate grows with alpha
    # a uniform plate decays at 2 pi^2 alpha: the fit is within 1 %, and closer on finer grids
    assert value["exact_decay_constant"] == pytest.approx(2 * math.pi**2)
    errors = [abs(value["relative_error"][str(n)]) for n in sorted(args.sizes)]
    assert errors[0] < 0.01 and errors == sorted(errors, reverse=True)
    for alpha, rate in value["rates"].items():
        assert rate == pytest.approx(2 * math.pi**2 * float(alpha), rel=0.01)


def computed(result) -> set[str]:
    """The kinds of partition a run computed (the others came from the cache)."""
    return {kinds(o.id) for o in result.outcomes if o.status == "ok"}


def test_the_cache_recomputes_only_what_a_changed_arg_reads(share):
    first = run(share, mode=0, **SMALL)
    assert computed(first) == {"setup", "sim", "analysis", "summary"}
    same = run(share, mode=0, **SMALL)
    assert computed(same) == set() and same.value == first.value
    for name in ("heat_summary.png", "heat_summary.csv"):  # the cached summary brings its files back
        assert (same.out_dir / name).read_bytes() == (first.out_dir / name).read_bytes()
    assert computed(run(share, mode=0, **SMALL, title="another title")) == {"summary"}
    refit = run(share, mode=0, **SMALL, fit_window=[1e-3, 0.3])
    assert computed(refit) == {"analysis", "summary"} and refit.value["rates"] != first.value["rates"]
    more = run(share, mode=0, **{**SMALL, "alphas": SMALL["alphas"] + [2.5]})
    fresh = {o.id for o in more.outcomes if o.status == "ok"}
    assert {p for p in fresh if kinds(p) == "sim"} == {f"sim-{n}-2.5" for n in SMALL["sizes"]}  # the others are kept
    assert "setup" not in fresh
    assert computed(run(share, mode=0, **{**SMALL, "t_end": 0.25})) == {"sim", "analysis", "summary"}


def test_an_insulating_core_slows_the_decay(share):
    small = {**SMALL, "t_end": 0.6, "inclusion_radius": 0.3}
    uniform = run(share, mode=0, **small).value
    core = run(share, mode=0, **small, inclusion_conductivity=0.1).value
    assert core["problems"] == [] and core["exact_decay_constant"] is None
    for n in SMALL["sizes"]:
        rates = core["rates_by_size"][str(n)]
        assert all(b > a for a, b in itertools.pairwise(rates))
        assert core["decay_constant"][str(n)] < uniform["decay_constant"][str(n)]
    assert core["max_balance_error"] < 1e-12


def test_a_run_too_short_to_fit_says_what_to_change(share):
    result = run(share, mode=0, sizes=[8], alphas=[1.0], t_end=0.01, samples=20)
    assert result.status == "ok"
    assert result.value["rates"] == {"1.0": None}
    assert "raise t_end or widen fit_window" in result.value["problems"][0]
    with open(result.out_dir / "heat_summary.csv") as f:
        assert next(csv.DictReader(f))["rate"] == ""


@pytest.mark.parametrize("bad, message", [
    ({"sizes": []}, "sizes is empty"),
    ({"sizes": [32, 2]}, "between 4 and 8192"),
    ({"sizes": [16, 16]}, "duplicates"),
    ({"alphas": [1.0, -2.0]}, "positive and finite"),
    ({"alphas": [1.0, 1.0]}, "duplicates"),
    ({"fit_window": [0.5, 0.1]}, "0 < low < high <= 1"),
    ({"cfl": 1.5}, "less than or equal to 1"),
    ({"blob_center": [0.5, 1.2]}, "inside the plate"),
    ({"t_end": 1e6, "sizes": [4096]}, "time steps"),
    ({"unknown": 1}, "Extra inputs are not permitted"),
])
def test_bad_args_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValidationError, match=message):
        heat_env().app_class.Args(**bad)


def test_docstring_examples():
    import doctest

    for name in ("app", "kernels"):
        outcome = doctest.testmod(heat_module(name))
        assert outcome.failed == 0 and outcome.attempted > 0, name


# -- the kernel ----------------------------------------------------------------------------------------


def test_kernel_balances_heat_on_a_patchy_plate():
    simulate, stable_dt = heat_module("kernels").simulate, heat_module("kernels").stable_dt

    rng = np.random.default_rng(1)
    n = 20
    k = rng.uniform(0.1, 3.0, (n + 2, n + 2))
    u0 = rng.uniform(0, 1, (n, n))
    h = 1 / (n + 1)
    dt, steps = stable_dt(h, 0.7, float(k.max()), 0.05, 1.0)
    assert dt <= h * h / (4 * 0.7 * k.max())
    out = simulate(u0, k, 0.7, dt, h, steps, 7)
    assert out["step"][0] == 0 and out["step"][-1] == steps
    balance = out["heat"][0] - out["heat"] - out["outflow"]
    assert np.abs(balance).max() < 1e-13 * out["heat"][0]
    assert out["field"].min() >= 0 and out["peak"][-1] <= out["peak"][0]
