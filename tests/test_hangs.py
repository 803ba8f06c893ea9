"""Hung partitions, with real processes: a frozen pool slot and a frozen Dask worker (SIGSTOP), and
a partition that never returns. The run names what is in flight, stops the worker past
``[cluster] partition_timeout``, retries or fails the partition, and ends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agi_core import AGI, RunError
from agi_core.base.events import Notice
from agi_core.base.stalls import RateMeter, StallPolicy
from agi_core.provenance import RunStore


def run(env, share, events=None, **kwargs):
    cluster = {"workers_data_path": str(share), **kwargs.pop("cluster", {})}
    return asyncio.run(AGI.run(env, cluster=cluster, on_event=events.append if events is not None else None, **kwargs))


def _freeze_when_running(marker: Path, seen: dict, store: RunStore | None = None) -> threading.Thread:
    """SIGSTOP the process that writes ``marker`` (the toy app's mark_dir); with ``store``, read
    the running run's record while the process is frozen, as `agi runs show` does."""

    def freeze() -> None:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.01)
        pid = int(marker.read_text())
        seen["pid"] = pid
        os.kill(pid, signal.SIGSTOP)
        if store is not None:
            while time.time() < deadline and "in_flight" not in seen:
                time.sleep(0.2)
                for record in store.list("toy"):
                    if record.status == "running" and record.in_flight:
                        seen["in_flight"] = [(item.id, item.pid) for item in record.in_flight]

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    return thread


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")  # a zombie has nothing left running
    except FileNotFoundError:
        return True


def test_a_frozen_pool_slot_is_named_stopped_and_its_partition_retried(toy_env, share):
    seen: dict = {}
    freezer = _freeze_when_running(share / "running-p3", seen, RunStore(share))
    events: list = []
    result = run(toy_env, share, events, mode="p", n=8, sleep=0.05, mark_dir=str(share), workers={"127.0.0.1": 2},
                 cluster={"partition_timeout": 4})
    freezer.join(5)
    assert result.status == "ok" and sorted(result.results) == [f"p{i}" for i in range(8)]
    notices = [e.text for e in events if isinstance(e, Notice)]
    late = [text for text in notices if "has run for" in text]
    stopped = [text for text in notices if "its worker was stopped" in text]
    assert len(late) == 1 and "'p3'" in late[0] and f"pid {seen['pid']}" in late[0] and "stopped at 4 s" in late[0]
    assert len(stopped) == 1 and "'p3'" in stopped[0] and "partition_timeout = 4" in stopped[0]
    assert ("p3", seen["pid"]) in seen["in_flight"]  # `agi runs show` of the running run named it
    record = json.loads(result.manifest.read_text())
    p3 = next(p for p in record["partitions"] if p["id"] == "p3")
    assert p3["status"] == "ok" and p3["retries"] == 1 and p3["worker"] != f"{p3['host']}:{seen['pid']}"
    assert any("hung" in warning and "'p3'" in warning for warning in record["warnings"])
    assert _gone(seen["pid"])
    assert not (result.manifest.parent / "in_flight.json").exists()


def test_a_partition_that_never_returns_fails_after_its_retries_and_the_run_ends(toy_env, share):
    started = time.monotonic()
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="p", n=4, hang_on=[1], workers={"127.0.0.1": 2},
            cluster={"partition_timeout": 2, "retries": 1})
    by_id = {o.id: o for o in info.value.result.outcomes}
    assert by_id["p1"].status == "failed" and "partition_timeout = 2" in by_id["p1"].error
    assert "it ran 2 times" in by_id["p1"].error
    assert all(by_id[pid].status == "ok" for pid in ("p0", "p2", "p3"))
    assert time.monotonic() - started < 60  # it ended (two stops of 2 s, not for ever)


def test_a_frozen_dask_worker_is_stopped_through_its_nanny_and_the_run_ends(toy_env, share, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # no warm cluster of another test
    seen: dict = {}
    freezer = _freeze_when_running(share / "running-p2", seen)
    events: list = []
    result = run(toy_env, share, events, mode="d", n=6, sleep=0.05, mark_dir=str(share), workers={"127.0.0.1": 2},
                 cluster={"partition_timeout": 4})
    freezer.join(5)
    assert result.status == "ok" and sorted(result.results) == [f"p{i}" for i in range(6)]
    stopped = [e.text for e in events if isinstance(e, Notice) and "its worker was stopped" in e.text]
    assert len(stopped) == 1 and "'p2'" in stopped[0] and f"pid {seen['pid']}" in stopped[0]
    assert result.results["p2"]["pid"] != seen["pid"]  # it ran again, elsewhere
    assert _gone(seen["pid"])


def test_the_policy_reads_every_form_and_refuses_others():
    assert StallPolicy.parse("auto").timeout(None) == 3600.0
    assert StallPolicy.parse("auto").timeout(100.0) == 2000.0
    assert StallPolicy.parse("auto").timeout(1.0) == 600.0
    assert StallPolicy.parse("off").timeout(5.0) is None
    assert StallPolicy.parse("2.5X").timeout(10.0) == 25.0
    assert StallPolicy.parse("30").timeout(None) == 30.0
    for bad in ("soon", "0", -1, "0x", True):
        with pytest.raises(ValueError, match="partition_timeout"):
            StallPolicy.parse(bad)
    meter = RateMeter()
    meter.add(weight=2.0, seconds=1.0)
    assert meter.expected(4.0) == 2.0


def test_a_bad_partition_timeout_is_a_settings_error_naming_the_key(toy_env, share):
    from agi_core.base.errors import SettingsError

    with pytest.raises(SettingsError, match="partition_timeout"):
        run(toy_env, share, mode="p", n=2, cluster={"partition_timeout": "soon"})


def test_a_dask_partition_that_never_returns_fails_alone_and_its_batch_mates_succeed(toy_env, share, tmp_path, monkeypatch):
    """One task holds a slot's whole batch: the hung partition uses up its retries, then the batch's
    next attempt skips it (the started log says each lost attempt was in it) and runs the others."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="d", n=6, hang_on=[2], workers={"127.0.0.1": 2},
            cluster={"partition_timeout": 3, "retries": 1, "dask": {"max_tasks_per_slot": 1}})
    by_id = {o.id: o for o in info.value.result.outcomes}
    assert [pid for pid, o in by_id.items() if o.status != "ok"] == ["p2"]
    error = by_id["p2"].error
    assert "partition_timeout = 3" in error and "its worker was lost 2 times while it ran" in error and "retries = 1" in error


def test_a_silent_workers_stale_heartbeat_gives_way_to_the_later_partition_its_started_log_names(tmp_path):
    """The race behind a frozen worker named with the wrong partition: its last heartbeat said p1
    runs, then it started p2 (the started log says so) and froze before the next heartbeat."""
    from dataclasses import dataclass

    from agi_core.executors.attempts import StartedLog, started_dir
    from agi_core.executors.dask_inflight import _moved_on

    @dataclass(frozen=True)
    class Task:  # what `in_flight_on` reads of a future: its key
        key: str

    folder = started_dir(tmp_path)
    folder.mkdir(parents=True)
    batch, other = ["p0", "p1", "p2", "p3"], ["q0", "q1"]
    futures = {Task("t1"): ("s0", batch), Task("t2"): ("s1", other)}
    with StartedLog.open(folder, batch[0]) as log:
        for index in (0, 1, 2):
            log.mark(index)
    with StartedLog.open(folder, other[0]) as log:
        log.mark(0)
    moved = _moved_on(futures, tmp_path, ["t1", "t2"], [("p1", 100.0), ("q0", 100.0)])
    assert [pid for pid, _ in moved] == ["p2", "q0"]  # q0 is still the last its batch started: kept, with its time
    assert moved[1] == ("q0", 100.0)
