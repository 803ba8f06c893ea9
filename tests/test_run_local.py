"""Real local runs: mode 0 in this process, the pool bit in real worker processes."""

import asyncio
import json
import os
import socket

import pytest

from agi_core import AGI, AgiEnv, AgiError, Mode, PlanError, RunError, SettingsError, WorkPlan


def run(env, share, cluster=None, **kwargs):
    return asyncio.run(AGI.run(env, cluster={"workers_data_path": str(share), **(cluster or {})}, **kwargs))


@pytest.mark.parametrize("mode", [0, "p"])
def test_toy_runs_and_records(toy_env, share, mode):
    result = run(toy_env, share, mode=mode, n=5)
    assert result.status == "ok"
    assert result.value == sum(i * i for i in range(5))
    assert sorted(result.results) == [f"p{i}" for i in range(5)]
    record = json.loads(result.manifest.read_text())
    assert record["schema"] == "agi.run.v2" and record["status"] == "ok"
    assert result.manifest == share / "runs" / "toy" / result.run_id / "manifest.json"
    assert record["mode"] == {"value": int(Mode.parse(mode)), "letters": Mode.parse(mode).letters}
    assert record["app"]["name"] == "toy" and record["app"]["version"] == "0.0.1" and len(record["app"]["code_hash"]) == 64
    assert record["args"]["n"] == 5 and len(record["settings_hash"]) == 64
    assert record["plan"]["fingerprint"] == result.plan.fingerprint
    assert record["totals"] == {"partitions": 5, "ok": 5, "failed": 0, "skipped": 0, "cached": 0, "not_run": 0}
    for part in record["partitions"]:
        assert part["status"] == "ok" and part["end"] >= part["start"] > 0
        assert part["slot"] == result.plan.slot_of()[part["id"]]
        assert part["kernel"] == "python" and part["device"] == "cpu" and part["worker"]
    assert not [p for p in result.run_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_mode_0_runs_in_this_process_in_order(toy_env, share):
    result = run(toy_env, share, mode=0, n=4)
    assert {r["pid"] for r in result.results.values()} == {os.getpid()}
    assert [o.id for o in result.outcomes] == [p for p in result.plan.assignment["127.0.0.1-0"]]


def test_pool_uses_one_real_process_per_slot(toy_env, share):
    result = run(toy_env, share, mode="p", n=8, sleep=0.05, workers={"127.0.0.1": 2})
    assert len(result.plan.slots) == 2
    pids = {slot: {result.results[pid]["pid"] for pid in ids} for slot, ids in result.plan.assignment.items()}
    assert all(len(p) == 1 for p in pids.values())  # each slot is one process
    assert len(set().union(*pids.values())) == 2 and os.getpid() not in set().union(*pids.values())


def test_failed_partition_fails_the_run_and_keeps_the_others(toy_env, share):
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="p", n=6, fail_on=[3])
    message = str(info.value)
    assert "partition 'p3' failed" in message and "ValueError: toy failure in partition 3" in message
    partial = info.value.result
    assert partial.status == "failed" and sorted(partial.results) == ["p0", "p1", "p2", "p4", "p5"]
    record = json.loads(partial.manifest.read_text())
    assert record["status"] == "failed"
    failed = [p for p in record["partitions"] if p["status"] == "failed"]
    assert [p["id"] for p in failed] == ["p3"] and "Traceback" in failed[0]["error"]


def test_dag_dependencies_cross_slots_and_failures_skip_dependents(toy_env, share):
    result = run(toy_env, share, mode="p", n=6, chain=True, workers={"127.0.0.1": 2})
    for i in range(1, 6):
        assert result.results[f"p{i}"]["deps"] == {f"p{i-1}": (i - 1) ** 2}
    slots = {result.plan.slot_of()[f"p{i}"] for i in range(6)}
    assert len(slots) == 2  # the chain really crosses slots
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode=0, n=5, chain=True, fail_on=[2], use_cache=False)  # fail_on is not a cache key input
    statuses = {o.id: o.status for o in info.value.result.outcomes}
    assert statuses == {"p0": "ok", "p1": "ok", "p2": "failed", "p3": "skipped", "p4": "skipped"}


def test_edited_plan_runs_as_edited(toy_env, share, tmp_path):
    plan = asyncio.run(AGI.get_distrib(toy_env, mode="p", n=6, workers={"127.0.0.1": 2}))
    data = json.loads(plan.to_json())
    data["assignment"] = {"127.0.0.1-0": [f"p{i}" for i in range(6)], "127.0.0.1-1": []}  # all on one slot
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    result = run(toy_env, share, mode="p", n=6, workers={"127.0.0.1": 2}, plan=path)
    assert {o.slot for o in result.outcomes} == {"127.0.0.1-0"}
    assert len({r["pid"] for r in result.results.values()}) == 1


def test_invalid_plan_writes_no_record(toy_env, share, tmp_path):
    plan = asyncio.run(AGI.get_distrib(toy_env, mode=0, n=3))
    data = json.loads(plan.to_json())
    data["assignment"]["127.0.0.1-0"].pop()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanError, match="not assigned to any slot"):
        run(toy_env, share, mode=0, n=3, plan=path)
    with pytest.raises(PlanError, match="stale work plan"):
        plan.save(path)
        run(toy_env, share, mode=0, n=4, plan=path)
    assert list(share.iterdir()) == []


def test_unmet_gpu_need_is_an_error_before_anything_runs(toy_env, share):
    from agi_core.kernels.selection import gpu_visible

    if gpu_visible():
        pytest.skip("this machine has a GPU")
    with pytest.raises(PlanError, match="partition 'p1' needs gpu"):
        run(toy_env, share, mode=0, n=3, need_gpu=[1])
    assert list(share.iterdir()) == []


def test_cython_bit_without_compiled_kernels_is_a_clear_error(toy_env, share):
    with pytest.raises(AgiError, match="asks for the cython kernels .*has no kernels_cy module"):
        run(toy_env, share, mode="c", n=2)
    assert list(share.iterdir()) == []


def test_rapids_bit_without_gpu_runs_cpu_kernels_and_says_so(share):
    from agi_core.kernels.selection import gpu_visible

    if gpu_visible():
        pytest.skip("this machine has a GPU")
    result = run(AgiEnv(app="mandelbrot"), share, mode="r", width=40, height=30, bands=3)
    record = json.loads(result.manifest.read_text())
    assert record["kernel_note"] == f"no GPU on {socket.gethostname()}: ran the CPU kernels"
    assert {p["device"] for p in record["partitions"]} == {"cpu"}
    assert {p["note"] for p in record["partitions"]} == {record["kernel_note"]}


def test_args_mapping_and_keywords_do_not_clash(toy_env, share):
    assert run(toy_env, share, mode=0, args={"n": 2}).value == 1
    with pytest.raises(SettingsError, match="given both"):
        run(toy_env, share, mode=0, args={"n": 2}, n=3)


def test_mandelbrot_same_image_in_mode_0_and_pool(share):
    from PIL import Image

    env = AgiEnv(app="mandelbrot")
    small = {"width": 160, "height": 120, "bands": 12, "max_iter": 100}
    images = []
    for mode in (0, "p"):
        result = run(env, share, mode=mode, **small)
        path = result.out_dir / "mandelbrot.png"
        assert result.value["image"] == str(path)
        with Image.open(path) as image:
            assert image.size == (160, 120) and image.format == "PNG"
            images.append(image.tobytes())
        assert 0.05 < result.value["inside_fraction"] < 0.5
    assert images[0] == images[1]


def test_mandelbrot_weights_favour_bands_near_the_set():
    from agi_core.plan import WorkPlan  # noqa: F401 - the plan is what we inspect

    plan = asyncio.run(AGI.get_distrib(AgiEnv(app="mandelbrot"), mode=0, bands=16))
    weights = [p.weight for p in plan.partitions]
    assert max(weights[6:10]) > 5 * weights[0]  # middle bands cross the set; the top one does not


def test_results_stream_back_as_data_not_text(toy_env, share):
    result = run(toy_env, share, mode="p", n=3)
    assert isinstance(result.results["p2"], dict) and result.results["p2"]["square"] == 4
    assert isinstance(result.plan, WorkPlan)


def test_a_slot_process_that_dies_is_replaced_and_only_the_partition_it_died_in_fails(toy_env, share):
    """The slot's process is started again after each death; the partition it died in runs again
    up to [cluster] retries, then fails naming the exit code; the rest of its slot succeeds."""
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="p", n=8, sleep=0.05, crash_on=[1], workers={"127.0.0.1": 1}, cluster={"retries": 1})
    outcomes = info.value.result.outcomes
    assert sorted(o.id for o in outcomes) == [f"p{i}" for i in range(8)]  # each partition exactly once
    by_id = {o.id: o for o in outcomes}
    assert by_id["p1"].status == "failed" and "died (exit code 3) while running it" in by_id["p1"].error
    assert "it ran 2 times" in by_id["p1"].error  # the first run and one retry
    assert all(by_id[pid].status == "ok" for pid in by_id if pid != "p1")
    record = json.loads(info.value.result.manifest.read_text())
    lines = {p["id"]: p for p in record["partitions"]}
    assert lines["p1"]["retries"] == 1
    order = info.value.result.plan.assignment["127.0.0.1-0"]  # heaviest first: p7, p6, ..., p1, p0
    # what the process had finished but not reported when it died ran again, and says so
    assert all(lines[pid].get("retries", 0) <= 1 for pid in order)


def test_a_killed_slot_names_the_partition_it_was_running(toy_env, share):
    """SIGKILL from outside (the OOM killer): the error names the running partition, not a queued one."""
    import os
    import signal
    import threading

    killed: list[str] = []
    marker = share / "running-p2"

    def killer() -> None:
        import time

        while not marker.exists():
            time.sleep(0.01)
        pid = int(marker.read_text())
        killed.append(str(pid))
        os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="p", n=6, sleep=0.3, mark_dir=str(share), workers={"127.0.0.1": 1}, cluster={"retries": 0})
    thread.join(5)
    by_id = {o.id: o for o in info.value.result.outcomes}
    assert [pid for pid, o in by_id.items() if o.status == "failed"] == ["p2"]
    assert f"pid {killed[0]}" in by_id["p2"].error and "exit code -9" in by_id["p2"].error


def test_a_result_that_cannot_travel_back_fails_its_partition_and_the_record_says_so(toy_env, share):
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="p", n=4, unpicklable_on=[2], workers={"127.0.0.1": 2})
    by_id = {o.id: o for o in info.value.result.outcomes}
    assert by_id["p2"].status == "failed" and "cannot be sent back" in by_id["p2"].error
    assert [by_id[p].status for p in ("p0", "p1", "p3")] == ["ok", "ok", "ok"]
    record = json.loads(info.value.result.manifest.read_text())
    line = next(p for p in record["partitions"] if p["id"] == "p2")
    assert line["status"] == "failed" and "cannot be sent back" in line["error"] and "result_location" not in line


def test_a_records_head_is_the_record_without_its_partitions(toy_env, share):
    """What the RUNS list reads (`read_record_head`): the manifest's fields before its partitions,
    the same as the whole record's; a running record, or one laid out otherwise, is read whole."""
    from agi_core.provenance.store import read_record, read_record_head

    with pytest.raises(RunError) as failed:
        run(toy_env, share, mode=0, n=40, fail_on=[3])
    manifest = failed.value.result.manifest
    head, whole = read_record_head(manifest), read_record(manifest)
    assert head.partitions == [] and len(whole.partitions) == 40
    assert head.model_dump(exclude={"partitions"}) == whole.model_dump(exclude={"partitions"}) and head.status == "failed"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(data))  # compact: no head to cut, read whole
    assert len(read_record_head(manifest).partitions) == 40
    manifest.write_text(json.dumps({**data, "status": "running"}, indent=1))  # running: its log and heartbeat are judged
    assert read_record_head(manifest).status == read_record(manifest).status != "failed"
