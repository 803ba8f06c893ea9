"""A Dask worker killed inside a partition: work() runs again elsewhere, and the record counts it exactly.

The test app `ledger` is not idempotent: each work() appends a line naming its partition to a file
on the share, so the ledger shows what really ran twice. Real processes throughout: the `agi run`
command line, its embedded Dask cluster (a Nanny and a worker process per slot), and a SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv
from agi_core.base.events import ClusterReady
from agi_core.executors.attempts import AGAIN, StartedLog, log_name, remove_started, rerun_counts
from tests.conftest import ROOT, TEST_APPS, run_agi

# -- the started logs themselves ---------------------------------------------------------------


def test_a_re_run_knows_what_started_before_and_leaves_a_marker(tmp_path):
    folder = tmp_path / "started"
    folder.mkdir()
    with StartedLog.open(folder, "a") as first:  # the first attempt starts a and b, then its worker is lost
        assert (first.mark(0), first.mark(1)) == (0, 0)
    assert not (folder / f"{log_name('a')}{AGAIN}").exists()  # a first attempt is no re-run
    with StartedLog.open(folder, "a") as second:  # lost again, inside b
        assert (second.mark(0), second.mark(1)) == (1, 1)
    with StartedLog.open(folder, "a") as third:
        assert [third.mark(k) for k in range(3)] == [2, 2, 0]  # c never started before
    with StartedLog.open(folder, "x") as other:  # another task of the run: its own log
        assert other.mark(0) == 0
    assert (folder / f"{log_name('a')}{AGAIN}").exists()
    batches = {"a": ["a", "b", "c"], "x": ["x"]}
    assert rerun_counts(folder, batches) == {"a": 2, "b": 2}  # c started once: no retry
    remove_started(folder)
    assert not folder.exists() and rerun_counts(folder, batches) == {}


def test_without_its_folder_nothing_is_logged_and_nothing_fails(tmp_path):
    with StartedLog.open(tmp_path / "gone", "a") as log:  # the run is over, or this is no run's task
        assert log.mark(0) == 0 and log.mark(0) == 0
    assert not (tmp_path / "gone").exists()


def test_a_line_cut_short_by_a_kill_is_not_counted(tmp_path):
    (tmp_path / log_name("a")).write_bytes(b"0\n\x00\x00\n1\n2")  # zeros a crashed host left; the kill landed in the last write
    with StartedLog.open(tmp_path, "a") as log:
        assert (log.mark(0), log.mark(1), log.mark(2)) == (1, 1, 0)


# -- a worker killed inside a partition, end to end ------------------------------------------------


def _wait_for(what: str, check, proc: subprocess.Popen[str], timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    proc.kill()
    stdout, stderr = proc.communicate()
    raise AssertionError(f"{what}: never happened (the run's exit code {proc.returncode})\n{stdout}\n{stderr}")


def _wait_for_thread(what: str, check, thread: threading.Thread, box: dict[str, object], timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline and thread.is_alive():
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: never happened (the run: {box})")


def _ledger(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(pid, int(proc)) for pid, proc in (line.split() for line in path.read_text().splitlines() if line.count(" ") == 1)]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def lost_worker_run(tmp_path_factory):
    """One `agi run ledger --mode d` on 2 workers, one batch per slot; the victim slot's worker is
    SIGKILLed while it holds its batch's second partition. Its nanny is told not to restart it,
    so the other worker is the only one left to run the batch again."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("lost_worker")
    share, ledger, gate = tmp / "share", tmp / "share" / "ledger.txt", tmp / "gate"
    share.mkdir()
    # plain TCP: this test's own client reaches into the run's cluster, as TLS refuses a stranger to
    cluster = {"workers_data_path": str(share), "workers": {"127.0.0.1": 2}, "dask": {"max_tasks_per_slot": 1}, "tls": False}
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    plan = asyncio.run(AGI.get_distrib(env, mode="d", cluster=cluster, n=6))
    slot_of = plan.slot_of()
    victim, survivor = sorted(plan.assignment)
    batch = [p.id for p in plan.partitions if slot_of[p.id] == victim]  # its one task, in the order its worker runs it
    assert len(batch) == 3, plan.assignment
    held = batch[1]
    args = {"n": 6, "ledger": str(ledger), "hold": held, "gate": str(gate)}
    plan = asyncio.run(AGI.get_distrib(env, mode="d", cluster=cluster, args=args))  # the run's own args: the same slots
    assert [p.id for p in plan.partitions if plan.slot_of()[p.id] == victim] == batch
    plan_file = tmp / "plan.json"
    plan.save(plan_file)
    sets = ["n=6", f'ledger="{ledger}"', f'hold="{held}"', f'gate="{gate}"', f'cluster.workers_data_path="{share}"',
            'cluster.workers."127.0.0.1"=2', "cluster.dask.max_tasks_per_slot=1", "cluster.tls=false"]
    proc = subprocess.Popen([sys.executable, "-m", "agi_core.cli", "--apps-path", str(TEST_APPS), "run", "ledger", "--mode", "d",
                             "--plan", str(plan_file), *(arg for item in sets for arg in ("--set", item))],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        held_pid = _wait_for(f"{held} to start", lambda: next((p for i, p in _ledger(ledger) if i == held), None), proc)
        others = set(plan.assignment[survivor])
        _wait_for("the survivor's batch", lambda: others <= {i for i, _ in _ledger(ledger)}, proc)
        manifest = next(share.glob("runs/ledger/*/manifest.json"))
        scheduler = json.loads(manifest.read_text())["cluster"]["scheduler"]
        with Client(scheduler, timeout=20) as client:
            pids = client.run(os.getpid)  # worker address -> its process id
            names = {address: w["name"] for address, w in client.scheduler_info()["workers"].items()}
            address = next(a for a, name in names.items() if name == victim)
            assert pids[address] == held_pid  # the worker of the victim slot is inside the held partition
            client.run(lambda dask_worker: dask_worker.close_gracefully(reason="test: stay down"), nanny=True, workers=[address])
            os.kill(held_pid, signal.SIGKILL)
            _wait_for("the killed worker to be gone", lambda: _gone(held_pid), proc)
        gate.touch()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return {"proc": proc, "stdout": stdout, "stderr": stderr, "share": share, "ledger": _ledger(ledger), "batch": batch,
            "held": held, "held_pid": held_pid, "victim": victim, "survivor": survivor, "manifest": manifest}


def test_only_partitions_that_started_on_the_lost_worker_count_a_retry(lost_worker_run):
    run = lost_worker_run
    assert run["proc"].returncode == 0, run["stderr"]
    record = json.loads(run["manifest"].read_text())
    retries = {p["id"]: p.get("retries", 0) for p in record["partitions"]}
    ran = Counter(pid for pid, _ in run["ledger"])
    before, held, after = run["batch"]
    # started on the lost worker (one finished there, one was inside work() when it died): ran twice, 1 retry each
    assert (retries[before], ran[before]) == (1, 2) and (retries[held], ran[held]) == (1, 2)
    # its batch's last partition never started there: it ran once, no retry; nor did the survivor's own
    assert (retries[after], ran[after]) == (0, 1)
    assert {pid: n for pid, n in retries.items() if n} == {before: 1, held: 1}
    assert sum(ran.values()) == 6 + 2
    assert record["reruns"] == 2
    assert any(w.startswith("2 partitions re-run after a lost worker") for w in record["warnings"])
    assert not (run["manifest"].parent / "started").exists()  # the started logs are cleaned up


def test_the_slot_that_did_the_work_is_credited(lost_worker_run):
    run = lost_worker_run
    record = json.loads(run["manifest"].read_text())
    parts = {p["id"]: p for p in record["partitions"]}
    survivor_pids = {proc for pid, proc in run["ledger"] if pid not in run["batch"]}
    for pid in run["batch"]:  # planned on the victim slot, run (again) by the survivor
        part = parts[pid]
        assert (part["slot"], part["worker"], part["ran_slot"]) == (run["victim"], run["survivor"], run["survivor"])
    assert {proc for pid, proc in run["ledger"][-3:]} == survivor_pids  # the re-runs ran in the survivor's process
    assert list(record["workers"]) == [run["survivor"]] and record["workers"][run["survivor"]]["slot"] == run["survivor"]
    shown = run_agi("runs", "show", record["run_id"], "--share", str(run["share"]))
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if run["victim"] in line or run["survivor"] in line]
    slot_row = next(line for line in rows if line.split("│")[1].strip() == run["survivor"])
    assert slot_row.split("│")[3].strip() == "6"  # every partition is the survivor's
    assert not any(line.split("│")[1].strip() == run["victim"] for line in rows if "│" in line)
    assert "2 partitions re-run after a lost worker" in shown.stdout
    assert "3 partitions ran on another slot than planned" in shown.stdout


def test_the_summary_line_and_runs_show_all_say_what_ran_again(lost_worker_run):
    run = lost_worker_run
    summary = next(line for line in run["stdout"].splitlines() if line.startswith("ok "))
    assert "6/6 partitions ok (2 partitions re-run after a lost worker)" in summary
    assert "warning: 2 partitions re-run after a lost worker" in " ".join(run["stderr"].split())
    record = json.loads(run["manifest"].read_text())
    shown = run_agi("runs", "show", record["run_id"], "--share", str(run["share"]), "--all")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("2 partitions re-run after a lost worker (work() ran"))
    end = next(k for k in range(start, len(lines)) if lines[k].startswith("└"))
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines[start:end] if line.startswith("│")]
    before, held, _ = run["batch"]
    # id, status, retries, planned slot, ran on slot, worker, host
    assert sorted(row[:6] for row in rows) == sorted([pid, "ok", "1", run["victim"], run["survivor"], run["survivor"]] for pid in (before, held))


def test_results_lost_with_the_worker_and_computed_again_count_too(tmp_path):
    """A chain l0 → l1 → l2 → l3 with l0..l2 on the victim slot: l0 and l1 finish there (the manager
    has their outcomes), then its worker dies inside l2. Their results died with it, so Dask
    computes l0 and l1 again for l2's re-run: outcomes the manager never gathers. It counts those
    re-runs from the started logs when the run ends."""
    from distributed import Client

    share, ledger, gate = tmp_path / "share", tmp_path / "share" / "ledger.txt", tmp_path / "gate"
    share.mkdir()
    cluster = {"workers_data_path": str(share), "workers": {"127.0.0.1": 2}, "tls": False}  # this test's client reaches in
    args = {"n": 4, "ledger": str(ledger), "hold": "l2", "gate": str(gate), "chain": True}
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    plan = asyncio.run(AGI.get_distrib(env, mode="d", cluster=cluster, args=args))
    victim, survivor = sorted(plan.assignment)
    edited = json.loads(plan.to_json())
    edited["assignment"] = {victim: ["l0", "l1", "l2"], survivor: ["l3"]}
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(edited))
    events: list[object] = []
    taken: list[str] = []
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(AGI.run(env, mode="d", cluster=cluster, args=args, plan=plan_file, on_event=events.append,
                                                on_outcome=lambda outcome: taken.append(outcome.id)))
        except BaseException as exc:  # noqa: BLE001 - the assertion below shows it
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        held_pid = _wait_for_thread("l2 to start", lambda: next((p for i, p in _ledger(ledger) if i == "l2"), None), thread, box)
        _wait_for_thread("the manager to take l0 and l1", lambda: {"l0", "l1"} <= set(taken), thread, box)
        scheduler = next(e.scheduler for e in events if isinstance(e, ClusterReady))
        with Client(scheduler, timeout=20) as client:
            names = {address: w["name"] for address, w in client.scheduler_info()["workers"].items()}
            address = next(a for a, name in names.items() if name == victim)
            assert client.run(os.getpid, workers=[address]) == {address: held_pid}
            client.run(lambda dask_worker: dask_worker.close_gracefully(reason="test: stay down"), nanny=True, workers=[address])
            os.kill(held_pid, signal.SIGKILL)
            _wait_for_thread("the killed worker to be gone", lambda: _gone(held_pid), thread, box)
    finally:
        gate.touch()
        thread.join(timeout=120)
    assert "error" not in box, box.get("error")
    result = box["result"]
    record = json.loads(result.manifest.read_text())
    parts = {p["id"]: p for p in record["partitions"]}
    ran = Counter(pid for pid, _ in _ledger(ledger))
    assert ran == {"l0": 2, "l1": 2, "l2": 2, "l3": 1}
    assert {pid: p.get("retries", 0) for pid, p in parts.items()} == {"l0": 1, "l1": 1, "l2": 1, "l3": 0}
    # l0 and l1: the outcomes the manager took came from the victim, before it died; the count came later
    assert parts["l0"]["worker"] == parts["l1"]["worker"] == victim
    assert (parts["l2"]["worker"], parts["l2"]["ran_slot"]) == (survivor, survivor)
    assert record["reruns"] == 3 and not (result.run_dir / "started").exists()
