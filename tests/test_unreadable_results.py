"""A result (or a dependency's result) that cannot be unpickled where it arrives fails its
partition with the cause and the fix, is recorded, and the run ends: in every executor.

The real case: the app's work() returns a polars frame, its workers run in the app's environment
(which has polars) and the manager's lacks polars. Here the toy app's `private_on` partitions
return a Frame of a module that only the processes running them put on their path.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pickle
import sys
from pathlib import Path

import pytest

from agi_core import AGI, RunError
from agi_core.cache import CacheStore
from agi_core.cluster import WarmClusters
from agi_core.executors import Outcome
from agi_core.executors.wire import pack_outcomes, read_outcomes, unpack_outcomes

HANG_GUARD_S = 120  # only so a regression fails instead of hanging the suite; no timing is asserted


def run(env, share, **kwargs):
    cluster = {"workers_data_path": str(share), **kwargs.pop("cluster", {})}
    return asyncio.run(asyncio.wait_for(AGI.run(env, cluster=cluster, **kwargs), HANG_GUARD_S))


def private_module(tmp_path: Path, name: str) -> Path:
    """A module file defining ``Frame(dict)``; its folder is on no path of the manager."""
    folder = tmp_path / "private"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text("class Frame(dict):\n    pass\n")
    return path


@pytest.fixture
def warm_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return WarmClusters.default()


def assert_unreadable_p2_recorded(error: RunError, module: str) -> None:
    """p2 failed naming its type and the fix, in the outcome and in the record; the others are ok."""
    by_id = {o.id: o for o in error.result.outcomes}
    failed = by_id["p2"]
    assert failed.status == "failed" and failed.result is None
    assert f"work() returned a {module}.Frame, which the manager cannot load" in failed.error
    assert f"No module named '{module}'" in failed.error
    assert f"install {module} in the environment of the manager" in failed.error and "or return plain data" in failed.error
    assert all(o.status == "ok" for pid, o in by_id.items() if pid != "p2") and len(by_id) == 4
    record = json.loads(error.result.manifest.read_text())
    assert record["status"] == "failed"
    lines = {p["id"]: p for p in record["partitions"]}
    assert lines["p2"]["status"] == "failed" and f"install {module}" in lines["p2"]["error"]
    assert [lines[pid]["status"] for pid in ("p0", "p1", "p3")] == ["ok", "ok", "ok"]
    assert f"work() returned a {module}.Frame" in str(error)  # the run's own message says it too


def test_pool_a_result_the_manager_cannot_load_fails_its_partition_and_the_run_ends(toy_env, share, tmp_path):
    module = private_module(tmp_path, "toy_private_pool")
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="p", n=4, private=str(module), private_on=[2], workers={"127.0.0.1": 2})
    assert_unreadable_p2_recorded(info.value, "toy_private_pool")


def test_dask_a_result_the_manager_cannot_load_fails_its_partition_and_the_run_ends(toy_env, share, tmp_path, warm_dir):
    module = private_module(tmp_path, "toy_private_dask")
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="d", n=4, private=str(module), private_on=[2], workers={"127.0.0.1": 2})
    assert_unreadable_p2_recorded(info.value, "toy_private_dask")


def test_dask_a_dependency_a_worker_cannot_load_fails_its_dependent_there(toy_env, share, tmp_path, warm_dir, monkeypatch):
    """The manager can load the result (it has the module), the worker of the dependent cannot."""
    module = private_module(tmp_path, "toy_private_dep")
    # imported here without touching sys.path, which spawned Dask workers would inherit
    spec = importlib.util.spec_from_file_location("toy_private_dep", module)
    monkeypatch.setitem(sys.modules, "toy_private_dep", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(sys.modules["toy_private_dep"])
    args = {"n": 6, "chain": True}
    cluster = {"workers_data_path": str(share)}
    plan = asyncio.run(AGI.get_distrib(toy_env, mode="d", workers={"127.0.0.1": 2}, cluster=cluster, **args))
    slot_of = plan.slot_of()
    crossing = next(i for i in range(1, 6) if slot_of[f"p{i}"] != slot_of[f"p{i - 1}"])  # p{i} runs on the other worker
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="d", private=str(module), private_on=[crossing - 1], workers={"127.0.0.1": 2}, **args)
    by_id = {o.id: o for o in info.value.result.outcomes}
    source, dependent = by_id[f"p{crossing - 1}"], by_id[f"p{crossing}"]
    assert source.status == "ok" and type(source.result).__module__ == "toy_private_dep"
    assert dependent.status == "failed" and dependent.worker == slot_of[f"p{crossing}"]
    assert dependent.error.startswith(f"its dependency p{crossing - 1}: work() returned a toy_private_dep.Frame, "
                                      f"which worker {dependent.worker} cannot load (ModuleNotFoundError")
    assert f"install toy_private_dep in the environment of worker {dependent.worker}" in dependent.error
    assert all(by_id[f"p{i}"].status == "skipped" for i in range(crossing + 1, 6))
    assert all(by_id[f"p{i}"].status == "ok" for i in range(crossing))
    lines = {p["id"]: p for p in json.loads(info.value.result.manifest.read_text())["partitions"]}
    assert lines[f"p{crossing}"]["status"] == "failed" and "install toy_private_dep" in lines[f"p{crossing}"]["error"]


def test_mode_0_results_cross_no_pickle_boundary(toy_env, share, tmp_path):
    """Mode 0 runs work() here: a result of a module only work() imports is just an object."""
    module = private_module(tmp_path, "toy_private_mode0")
    result = run(toy_env, share, mode=0, n=4, private=str(module), private_on=[2], use_cache=False)
    assert result.status == "ok" and type(result.results["p2"]).__module__ == "toy_private_mode0"
    assert result.value == sum(i * i for i in range(4))


def test_mode_0_a_cache_entry_it_cannot_load_is_computed_again_here(toy_env, share, tmp_path):
    """The one pickle a mode-0 run reads: a cache entry a pool slot wrote. Not used, not a hang:
    the partition is computed again in this process, and the record says why."""
    module = private_module(tmp_path, "toy_private_cached")
    args = {"n": 4, "private": str(module), "private_on": [2]}
    with pytest.raises(RunError):  # the pool run stores p2's entry, then the manager cannot load its result
        run(toy_env, share, mode="p", workers={"127.0.0.1": 2}, **args)
    result = run(toy_env, share, mode=0, **args)
    assert result.status == "ok" and type(result.results["p2"]).__module__ == "toy_private_cached"
    p2 = {o.id: o for o in result.outcomes}["p2"]
    assert p2.status == "ok" and "toy_private_cached" in p2.note
    # a sound entry this process could not load is not damage: it is kept (with the fix), not deleted
    assert p2.cache != "corrupt" and "install toy_private_cached" in p2.note and "the entry is kept" in p2.note
    assert p2.cache_key in CacheStore.for_app(share, "toy").view([p2.cache_key])


class _LoadsOnlyIn:
    """Pickles anywhere; unpickles only in the process whose pid it was given."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __reduce__(self):
        return (_load_only_in, (self.pid,))


def _load_only_in(pid: int) -> _LoadsOnlyIn:
    if os.getpid() != pid:
        raise RuntimeError(f"only process {pid} loads this")
    return _LoadsOnlyIn(pid)


def test_wire_fails_only_the_outcome_whose_result_cannot_be_loaded():
    outcomes = [Outcome("a", "s", "ok", result={"x": 1}), Outcome("b", "s", "ok", result=_LoadsOnlyIn(os.getpid() + 1)),
                Outcome("c", "s", "ok", result=3), Outcome("d", "s", "ok", result=lambda: 0)]
    data = pack_outcomes(outcomes)
    assert outcomes[0].result == {"x": 1}  # the sender's outcomes keep their results
    assert outcomes[3].status == "failed" and "cannot be sent back" in outcomes[3].error
    _, unreadable = read_outcomes(data, "the manager")
    assert list(unreadable) == ["b"] and "RuntimeError: only process" in unreadable["b"]
    assert "make tests.test_unreadable_results._LoadsOnlyIn loadable there" in unreadable["b"]
    by_id = {o.id: o for o in unpack_outcomes(data, "the manager")}
    assert by_id["a"].result == {"x": 1} and by_id["c"].result == 3 and by_id["a"].status == by_id["c"].status == "ok"
    assert by_id["b"].status == "failed" and by_id["b"].result is None
    assert by_id["b"].error.startswith(
        "work() returned a tests.test_unreadable_results._LoadsOnlyIn, which the manager cannot load")
    assert by_id["d"].status == "failed" and pickle.loads(pickle.dumps(by_id["d"])).status == "failed"
