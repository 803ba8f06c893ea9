"""The seams later features plug into: the graph driver, the request, the executor registry, the
typed record (v2, v1 still read, the partition log folded while a run runs)."""

from __future__ import annotations

import asyncio
import json

import pytest

from agi_core import AGI, AgiEnv, Mode, Partition, PlanError
from agi_core.base.errors import AgiError
from agi_core.executors import executor_name, known_executors
from agi_core.plan import GraphDriver, Known
from agi_core.provenance import RunStore, read_record
from agi_core.run import RunRequest, resolve
from tests.conftest import TEST_APPS

# -- graph driver (pure logic) -------------------------------------------------------------------


def diamond() -> list[Partition]:
    return [Partition("a"), Partition("b", deps=("a",)), Partition("c", deps=("a",)), Partition("d", deps=("b", "c")),
            Partition("e")]


def test_driver_hands_out_a_node_only_when_all_its_dependencies_succeeded():
    driver = GraphDriver(diamond())
    assert driver.ready() == ["a", "e"]
    assert driver.ready() == []  # nothing is handed out twice
    assert driver.complete("a", ok=True, result=1) == []
    assert sorted(driver.ready()) == ["b", "c"]
    driver.complete("b", ok=True, result=2)
    assert driver.ready() == []  # d still waits for c
    driver.complete("c", ok=True, result=3)
    assert driver.ready() == ["d"] and driver.inputs("d") == {"b": 2, "c": 3}
    driver.complete("d", ok=True)
    assert not driver.finished
    driver.complete("e", ok=True)
    assert driver.finished


def test_driver_skips_every_descendant_of_a_failure_once_and_keeps_independent_branches():
    driver = GraphDriver(diamond())
    driver.ready()
    assert sorted(driver.complete("a", ok=False)) == ["b", "c", "d"]  # each descendant once
    assert driver.ready() == []
    assert driver.failed_dependency("d") in ("b", "c")
    assert not driver.finished  # e is independent and still open
    driver.complete("e", ok=True)
    assert driver.finished


def test_driver_starts_with_known_results_done_and_feeding_their_dependents():
    driver = GraphDriver(diamond(), known={"a": Known(result=10), "b": Known(result=20)})
    assert driver.ready() == ["c", "e"]  # c waited only on a; e has no deps; d still waits on c
    assert [(pid, known.result) for pid, known in driver.take_known()] == [("a", 10), ("b", 20)]
    driver.complete("c", ok=True, result=3)
    assert driver.ready() == ["d"] and driver.inputs("d") == {"b": 20, "c": 3} and driver.result("b") == 20


# -- request and registry -------------------------------------------------------------------------


def test_request_is_frozen_json_and_decides_the_mode_once(toy_env):
    from_settings = resolve(toy_env)
    assert from_settings.mode == int(toy_env.settings().cluster.mode)
    request = resolve(toy_env, mode="dp", args={"n": 3}, cluster={"workers": {"127.0.0.1": 2}})
    assert request.run_mode == Mode.POOL | Mode.CLUSTER and request.executor == "dask" and request.args["n"] == 3
    assert RunRequest.from_json(request.to_json()) == request
    assert json.loads(str(request))["schema"] == "agi.request.v1"
    with pytest.raises(ValueError, match="frozen"):
        request.mode = 0  # type: ignore[misc]
    assert request.env().project_dir == toy_env.project_dir  # another process finds the same app


def test_registry_picks_the_executor_by_mode():
    assert {executor_name(Mode(m)) for m in range(16)} == set(known_executors)
    assert executor_name(Mode.parse("p")) == "pool" and executor_name(Mode(0)) == "sequential"


def test_a_plan_written_for_the_pool_runs_on_the_cluster_of_this_machine(toy_env, share, tmp_path):
    """Slots of this machine have one name whatever the mode (127.0.0.1-k)."""
    cluster = {"workers_data_path": str(share), "workers": {"127.0.0.1": 2}}
    plan = asyncio.run(AGI.get_distrib(toy_env, mode="p", n=4, cluster=cluster))
    assert sorted(plan.assignment) == ["127.0.0.1-0", "127.0.0.1-1"]
    plan.assignment = {"127.0.0.1-0": [], "127.0.0.1-1": [p.id for p in plan.partitions]}  # an edit
    path = tmp_path / "plan.json"
    plan.save(path)
    result = asyncio.run(AGI.run(toy_env, mode="dp", n=4, cluster=cluster, plan=path))
    assert {o.slot for o in result.outcomes} == {"127.0.0.1-1"}


def test_a_plan_for_another_slot_name_is_refused_naming_the_slots(toy_env, share, tmp_path):
    plan = asyncio.run(AGI.get_distrib(toy_env, mode=0, n=2))
    data = json.loads(plan.to_json())
    data["slots"][0]["name"] = "elsewhere-0"
    data["assignment"] = {"elsewhere-0": data["assignment"]["127.0.0.1-0"]}
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match="elsewhere-0"):
        asyncio.run(AGI.run(toy_env, mode=0, n=2, plan=tmp_path / "plan.json", cluster={"workers_data_path": str(share)}))


# -- the record ------------------------------------------------------------------------------------


def test_record_v2_lists_workers_with_versions_and_partition_outputs(share):
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    result = asyncio.run(AGI.run(env, mode="p", n=4, write_files=True, cluster={"workers_data_path": str(share)}))
    record = read_record(result.manifest)
    assert record.schema_ == "agi.run.v2" and record.status == "ok" and record.request["app"] == "toy"
    assert record.totals.ok == 4 and len(record.partitions) == 4
    for worker in record.workers.values():
        assert worker.versions["python"] and worker.versions["agi-orchestrator"] and worker.versions["toy"] == "0.0.1"
    part = next(p for p in record.partitions if p.id == "p2")
    assert part.outputs == ["part-2.txt"] and (result.out_dir / "part-2.txt").is_file()
    assert part.cache == "stored" and part.result_location.startswith(str(share / "cache" / "toy" / "packs"))
    from agi_core.cache import CacheStore

    assert part.result_location.endswith(".pack")
    assert CacheStore.header_at(part.result_location, part.cache_key)["partition"] == "p2"
    assert sorted(p.name for p in result.run_dir.iterdir()) == ["cache_keys.json", "manifest.json", "out", "plan.json"]  # log folded, removed


def test_v1_records_still_read(share):
    run_dir = share / "runs" / "toy" / "20261101-120000-abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({
        "schema": "agi.run.v1", "run_id": "20261101-120000-abcdef", "status": "ok",
        "app": {"name": "toy", "version": "0.0.1", "code_hash": "x" * 64, "git_commit": None, "project_dir": "/p"},
        "args": {"n": 1}, "mode": {"value": 1, "letters": "p"}, "settings_hash": "h", "settings_file": "f",
        "plan": {"fingerprint": "fp", "partitions": 1, "slots": ["localhost-0"], "file": "plan.json"}, "executor": "pool",
        "cluster": None, "manager": {"host": "m", "pid": 1, "python": "3.11.7", "platform": "Linux"},
        "workers": {"m:2": {"host": "m", "slot": "localhost-0", "kernel": "python", "device": "cpu"}}, "kernel_note": None,
        "started": "2026-11-01T12:00:00.000+00:00", "ended": "2026-11-01T12:00:01.000+00:00", "duration_s": 1.0,
        "totals": {"partitions": 1, "ok": 1, "failed": 0, "skipped": 0, "not_run": 0}, "error": None, "out_dir": "/o",
        "partitions": [{"id": "p0", "slot": "localhost-0", "worker": "m:2", "host": "m", "status": "ok", "start": 1.0, "end": 2.0,
                        "duration_s": 1.0, "kernel": "python", "device": "cpu", "retries": 0, "cache_hit": False, "error": None}],
    }))
    record = RunStore(share).find("20261101")
    assert record.schema_ == "agi.run.v1" and record.partitions[0].duration_s == 1.0 and record.workers["m:2"].slot == "localhost-0"


def test_a_record_that_is_not_a_run_record_is_named(share):
    bad = share / "runs" / "toy" / "x"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text('{"schema": "something.else"}')
    with pytest.raises(AgiError, match="not a run record"):
        read_record(bad / "manifest.json")
    assert RunStore(share).list()[0].status == "unreadable"


def test_scale_20000_partitions_pool_and_cluster_record_every_one(share):
    """Batching keeps many tiny partitions cheap; every one is still recorded (no timing here)."""
    env = AgiEnv(app="noop", apps_path=TEST_APPS)
    cluster = {"workers_data_path": str(share), "workers": {"127.0.0.1": 2}}
    for mode in ("p", "d"):
        result = asyncio.run(AGI.run(env, mode=mode, n=20000, cluster=cluster, use_cache=False))  # the executors, not the cache
        assert result.value == 20000
        record = read_record(result.manifest)
        assert record.totals.ok == 20000 and len({p.id for p in record.partitions}) == 20000
        assert {p.slot for p in record.partitions} == {"127.0.0.1-0", "127.0.0.1-1"}


def test_a_relative_apps_path_works_for_workers_that_start_elsewhere(share, monkeypatch, tmp_path):
    """Launched workers start in their log folder: the app's folder must be absolute in the job."""
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    env = AgiEnv(app="toy", apps_path="tests/apps")
    assert env.src_dir.is_absolute() and env.src_dir == TEST_APPS / "toy_project" / "src"
    assert resolve(env).apps_path == (str(TEST_APPS),)


@pytest.mark.parametrize("age, expected", [(5.0, "running"), (120.0, "abandoned")])
def test_a_running_record_of_another_host_is_judged_by_its_heartbeat(share, age, expected):
    import time

    from agi_core.provenance import AppRecord, ManagerRecord, RunRecord
    from agi_core.provenance.writer import HEARTBEAT_FILE, LOG_FILE

    run_dir = share / "runs" / "toy" / "20261123-100000-aaaaaa"
    run_dir.mkdir(parents=True)
    record = RunRecord(run_id=run_dir.name, status="running", app=AppRecord(name="toy"),
                       manager=ManagerRecord(host="another-host", pid=4242))
    record.partitions = []
    (run_dir / "manifest.json").write_text(record.dump_json())
    (run_dir / HEARTBEAT_FILE).write_text(f"{time.time() - age}\n")
    (run_dir / LOG_FILE).write_text('{"id": "p0", "status": "ok"}\n{"id": "p1", "sta')  # a cut last line is ignored
    found = read_record(run_dir / "manifest.json")
    assert found.status == expected and [p.id for p in found.partitions] == ["p0"]
    assert ("another-host" in (found.error or "")) == (expected == "abandoned")  # the error says whose heartbeat stopped


def test_an_unknown_cluster_backend_fails_before_anything_runs(toy_env, share):
    with pytest.raises(AgiError, match="unknown cluster backend 'nosuch'") as info:
        asyncio.run(AGI.run(toy_env, mode="d", n=2, cluster={"workers_data_path": str(share), "backend": "nosuch"}))
    assert "ssh" in (info.value.fix or "") and not list(share.iterdir())


def test_resuming_an_unknown_or_finished_run_is_refused_before_anything_runs(toy_env, share):
    cluster = {"workers_data_path": str(share)}
    with pytest.raises(AgiError, match="no run '20261101-120000-abcdef'"):
        asyncio.run(AGI.run(toy_env, resume="20261101-120000-abcdef", cluster=cluster))
    assert not list(share.iterdir())
    done = asyncio.run(AGI.run(toy_env, mode=0, n=2, cluster=cluster))
    with pytest.raises(AgiError, match=f"cannot resume run {done.run_id}: it finished ok"):
        asyncio.run(AGI.run(toy_env, resume=done.run_id, cluster=cluster))
    with pytest.raises(AgiError, match="cannot be given with it"):
        asyncio.run(AGI.run(toy_env, resume=done.run_id, cluster=cluster, n=3))
