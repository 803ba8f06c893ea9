"""Elastic runs (issue 24): start with the workers that joined, give work to late ones, survive leaving ones.

The re-balancing itself (`executors.elastic.BatchQueues`) is checked as a property over random plans
and random join/leave sequences; the rest runs real Dask worker processes on this machine through a
test backend (`tests/elastic_backend.py`) whose workers join when a file appears, never, leave
when a file appears, or retire after a lifetime (drained first), with the non-idempotent `ledger` app, whose ledger file shows what really ran.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi_core import AGI, AgiEnv, AgiError
from agi_core.base.events import PartitionsMoved, WorkerJoined, WorkerLeft, WorkersJoining
from agi_core.cluster.joining import resolve_min_workers
from agi_core.executors.elastic import Batch, BatchQueues
from agi_core.settings import ClusterSettings
from tests import elastic_backend
from tests.conftest import TEST_APPS

# -- min_workers ------------------------------------------------------------------------------------


def test_min_workers_counts_fractions_all_and_the_backends_default():
    assert resolve_min_workers(None, 4, backend_default=4) == 4  # ssh: all
    assert resolve_min_workers(None, 4, backend_default=1) == 1  # slurm: the first job's worker
    assert resolve_min_workers(0.5, 3, backend_default=3) == 2  # a fraction, rounded up
    assert resolve_min_workers("all", 3, backend_default=1) == 3
    assert resolve_min_workers(7, 3, backend_default=1) == 3  # never more than the map has


def test_the_default_comes_from_the_backend():
    from agi_core.cluster.slurm import SlurmSettings
    from agi_core.settings.backend_plugins import load_backend

    assert load_backend("ssh").default_min_workers(None, 5) == 5
    assert load_backend("slurm").default_min_workers(SlurmSettings(), 5) == 1  # one job's workers
    assert load_backend("slurm").default_min_workers(SlurmSettings(processes=2), 6) == 2


@pytest.mark.parametrize("bad", [0, 1.5, True, "some"])
def test_a_wrong_min_workers_is_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match="min_workers"):
        ClusterSettings(min_workers=bad)


# -- the re-balancing, as a property ----------------------------------------------------------------


@st.composite
def scenarios(draw):
    planned = [f"h-{k}" for k in range(draw(st.integers(1, 4)))]
    weights = draw(st.lists(st.integers(1, 9), min_size=0, max_size=40))
    batches = [Batch(seq, draw(st.sampled_from(planned)), [f"p{seq}"], float(w)) for seq, w in enumerate(weights)]
    first = draw(st.lists(st.sampled_from(planned), min_size=1, unique=True))
    # each step: a joined slot finishes what it runs, a slot (planned or new) joins, or one leaves
    steps = draw(st.lists(st.tuples(st.sampled_from(["finish", "finish", "join", "leave"]),
                                    st.sampled_from([*planned, "new-0", "new-1"])), max_size=60))
    return planned, batches, first, steps


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_partition_runs_exactly_once_and_each_queue_stays_in_plan_order(scenario):
    planned, batches, first, steps = scenario
    everything = {pid for b in batches for pid in b.ids}
    queues = BatchQueues(batches)
    joined = list(first)
    queues.orphan([s for s in queues.slots() if s not in joined], joined)
    running: dict[str, list[Batch]] = {}  # slot -> submitted batches (Dask's: they never move)
    lost: list[Batch] = []  # a left worker's submitted batches: Dask runs them again elsewhere
    done: Counter[str] = Counter()

    def check() -> None:
        places = [pid for slot in queues.slots() for b in queues.view(slot) for pid in b.ids]
        places += [pid for held in running.values() for b in held for pid in b.ids] + [pid for b in lost for pid in b.ids]
        assert Counter(places) + done == Counter(everything)  # every partition in one place only
        for slot in queues.slots():
            seqs = [b.seq for b in queues.view(slot)]
            assert seqs == sorted(seqs)  # plan order in every slot

    def run_some(slot: str) -> None:
        for batch in running.pop(slot, []):
            done.update(batch.ids)
        running[slot] = queues.take(slot, 2)

    for action, slot in [*steps, *(("drain", None),)]:
        if action == "finish" and slot in joined:
            run_some(slot)
        elif action == "join" and slot not in joined:
            joined.append(slot)
            queues.add(slot)
            before = {id(b): (b.moves, b.slot) for s in queues.slots() for b in queues.view(s)}
            mine = {id(b) for b in queues.view(slot)}
            queues.orphan([s for s in queues.slots() if s not in joined], joined, reason="left")
            mine = {id(b) for b in queues.view(slot)}
            for move in queues.steal(slot):
                assert move.target == slot and move.reason == "joined"
            for batch in queues.view(slot):
                if id(batch) not in mine and id(batch) in before:
                    moves, planned_for = before[id(batch)]
                    assert moves == 0 or planned_for == slot  # never a second move, but back home
        elif action == "leave" and slot in joined and len(joined) > 1:
            joined.remove(slot)
            lost += running.pop(slot, [])
            queues.orphan([slot], joined, reason="left")
        elif action == "drain":
            while len(queues) or any(running.values()) or lost:
                for batch in lost:
                    done.update(batch.ids)
                lost = []
                for s in joined:
                    run_some(s)
                queues.orphan([s for s in queues.slots() if s not in joined], joined, reason="left")
        check()
    assert done == Counter(everything)  # exactly once each


# -- real workers --------------------------------------------------------------------------------


def _ledger(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(pid, int(proc)) for pid, proc in (line.split() for line in path.read_text().splitlines() if line.count(" ") == 1)]


def _wait(what: str, check, thread: threading.Thread, box: dict, timeout: float = 90.0):
    deadline = time.time() + timeout
    while time.time() < deadline and thread.is_alive():
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: never happened (the run: {box})")


def _start(env: AgiEnv, cluster: dict, args: dict, events: list) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def go() -> None:
        try:
            box["result"] = asyncio.run(AGI.run(env, mode="d", cluster=cluster, args=args, use_cache=False, on_event=events.append))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, box


def _record(share: Path) -> dict:
    return json.loads(next(share.glob("runs/ledger/*/manifest.json")).read_text())


@pytest.fixture
def ledger_env(monkeypatch):
    elastic_backend.register(monkeypatch)
    return AgiEnv(app="ledger", apps_path=TEST_APPS)


def _cluster(share: Path, **options) -> dict:
    return {"workers_data_path": str(share), "workers": {"127.0.0.1": 2}, "tls": False, "backend": "elastictest",
            "dask": {"max_tasks_per_slot": 16}, **options}


def test_a_late_worker_gets_its_own_batches_back_and_the_run_starts_without_it(ledger_env, tmp_path):
    share, ledger, gate, late = tmp_path / "share", tmp_path / "ledger.txt", tmp_path / "gate", tmp_path / "late"
    share.mkdir()
    base = _cluster(share, min_workers=1)
    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=base, n=32))
    first, second = sorted(plan.assignment)
    held = [p.id for p in plan.partitions if plan.slot_of()[p.id] == first][0]  # the first batch of the first slot
    cluster = {**base, "elastictest": {"late": {second: str(late)}}}
    events: list = []
    thread, box = _start(ledger_env, cluster, {"n": 32, "ledger": str(ledger), "hold": held, "gate": str(gate)}, events)
    _wait("the held partition to start", lambda: any(pid == held for pid, _ in _ledger(ledger)), thread, box)
    started_with = {proc for _, proc in _ledger(ledger)}
    late.touch()  # the second worker joins now, while the first is held
    _wait("the late worker to run partitions", lambda: {proc for _, proc in _ledger(ledger)} - started_with, thread, box)
    gate.touch()
    thread.join(120)
    assert "error" not in box, box
    ran = Counter(pid for pid, _ in _ledger(ledger))
    assert ran == Counter({p.id: 1 for p in plan.partitions})  # every partition once
    moved = [e for e in events if isinstance(e, PartitionsMoved)]
    assert moved[0].source == second and moved[0].target == first and moved[0].reason == "not joined" and moved[0].count == 16
    assert any(isinstance(e, WorkerJoined) and e.slot == second for e in events)
    back = [e for e in moved if e.reason == "joined"]
    assert back and back[0].target == second and back[0].count > 0
    joining = [e for e in events if isinstance(e, WorkersJoining)]
    assert joining[-1].expected == 2 and joining[-1].needed == 1 and joining[-1].joined == 1
    record = _record(share)
    parts = {p["id"]: p for p in record["partitions"]}
    on_late = {pid for pid, p in parts.items() if (p.get("ran_slot") or p["slot"]) == second}
    assert on_late and held not in on_late
    assert all(p["slot"] in (first, second) for p in parts.values())  # the record keeps the planned slot
    assert second in record["workers"]  # the late worker's facts are recorded


def test_a_worker_that_never_joins_is_recorded_with_the_backends_report(ledger_env, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    base = _cluster(share, min_workers=1, join_timeout=2)
    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=base, n=8))
    second = sorted(plan.assignment)[1]
    events: list = []
    gate = tmp_path / "gate"  # held until the join wait is over, so the run sees it pass
    held = [p.id for p in plan.partitions if plan.slot_of()[p.id] != second][0]
    thread, box = _start(ledger_env, {**base, "elastictest": {"never": [second]}},
                         {"n": 8, "hold": held, "gate": str(gate), "ledger": str(tmp_path / "ledger.txt")}, events)
    _wait("the never-joined notice", lambda: any("never joined" in getattr(e, "text", "") for e in events), thread, box)
    gate.touch()
    thread.join(120)
    assert "error" not in box, box
    record = _record(share)
    assert record["cluster"]["never_joined"] == [second]
    assert "not started (test backend: never)" in record["cluster"]["never_joined_report"]
    assert {p["status"] for p in record["partitions"]} == {"ok"} and len(record["partitions"]) == 8


def test_without_enough_workers_the_error_names_them_and_min_workers(ledger_env, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=_cluster(share), n=4))
    second = sorted(plan.assignment)[1]
    cluster = {**_cluster(share, join_timeout=1.5), "elastictest": {"never": [second]}}  # default: all of them
    with pytest.raises(AgiError) as caught:
        asyncio.run(AGI.run(ledger_env, mode="d", cluster=cluster, n=4, use_cache=False))
    assert f"1 worker(s) did not join within 1.5 s, on host(s) 127.0.0.1: {second}" in caught.value.message
    assert "not started (test backend: never)" in caught.value.message
    assert "min_workers" in caught.value.fix


def test_a_leaving_worker_hands_its_queued_batches_on(ledger_env, tmp_path):
    share, ledger, gate, leave = tmp_path / "share", tmp_path / "ledger.txt", tmp_path / "gate", tmp_path / "leave"
    share.mkdir()
    base = _cluster(share)
    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=base, n=32))
    first, second = sorted(plan.assignment)
    held = [p.id for p in plan.partitions if plan.slot_of()[p.id] == second][0]
    events: list = []
    thread, box = _start(ledger_env, {**base, "elastictest": {"leave": {second: str(leave)}}},
                         {"n": 32, "ledger": str(ledger), "hold": held, "gate": str(gate)}, events)
    _wait("the held partition to start", lambda: any(pid == held for pid, _ in _ledger(ledger)), thread, box)
    leave.touch()
    _wait("the worker to leave", lambda: any(isinstance(e, WorkerLeft) and e.slot == second for e in events), thread, box)
    gate.touch()
    thread.join(120)
    assert "error" not in box, box
    ran = Counter(pid for pid, _ in _ledger(ledger))
    assert set(ran) == {p.id for p in plan.partitions}
    assert {pid for pid, n in ran.items() if n > 1} <= {held}  # only what ran on the leaving worker ran again
    moved = [e for e in events if isinstance(e, PartitionsMoved) and e.reason == "left"]
    assert moved and moved[0].source == second and moved[0].target == first
    record = _record(share)
    assert {p["status"] for p in record["partitions"]} == {"ok"}
    assert sum(1 for p in record["partitions"] if p["slot"] == second and p.get("ran_slot") == first) >= moved[0].count


def test_the_cli_shows_joining_joins_leaves_and_moves():
    import io

    from rich.console import Console

    from agi_core.cli.run_view import RunView

    out = io.StringIO()
    with RunView(enabled=True, console=Console(file=out, width=200)) as view:
        for event in (WorkersJoining(0, 2, 1), WorkersJoining(1, 2, 1), PartitionsMoved("h-1", "h-0", 16, "not joined"),
                      WorkerJoined("h-1", "h-1", "127.0.0.1"), PartitionsMoved("h-0", "h-1", 15, "joined"), WorkerLeft("h-0", "h-0")):
            view(event)
    assert out.getvalue().splitlines() == ["workers: 0/2 joined (starts at 1)", "workers: 1/2 joined (starts at 1)",
                                           "moved 16 partitions h-1 → h-0 (not joined)", "worker h-1 joined (late) on 127.0.0.1",
                                           "moved 15 partitions h-0 → h-1 (joined)", "worker h-0 left"]


def test_when_every_worker_of_the_start_left_a_new_one_takes_over(ledger_env, tmp_path):
    share, ledger, gate = tmp_path / "share", tmp_path / "ledger.txt", tmp_path / "gate"
    late, leave = tmp_path / "late", tmp_path / "leave"
    share.mkdir()
    base = _cluster(share, min_workers=1, join_timeout=60)
    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=base, n=16))
    first, second = sorted(plan.assignment)
    held = [p.id for p in plan.partitions if plan.slot_of()[p.id] == first][0]
    events: list = []
    cluster = {**base, "elastictest": {"late": {second: str(late)}, "leave": {first: str(leave)}}}
    thread, box = _start(ledger_env, cluster, {"n": 16, "ledger": str(ledger), "hold": held, "gate": str(gate)}, events)
    _wait("the held partition to start", lambda: any(pid == held for pid, _ in _ledger(ledger)), thread, box)
    leave.touch()  # the only worker leaves: nobody is left
    _wait("the worker to leave", lambda: any(isinstance(e, WorkerLeft) and e.slot == first for e in events), thread, box)
    late.touch()  # a new one comes
    _wait("the new worker to join", lambda: any(isinstance(e, WorkerJoined) and e.slot == second for e in events), thread, box)
    gate.touch()
    thread.join(120)
    assert "error" not in box, box
    ran = Counter(pid for pid, _ in _ledger(ledger))
    assert set(ran) == {p.id for p in plan.partitions}
    assert {pid for pid, n in ran.items() if n > 1} <= {held}  # only what ran on the leaving worker ran again
    assert any(isinstance(e, PartitionsMoved) and e.source == first and e.target == second for e in events)
    record = _record(share)
    assert {p["status"] for p in record["partitions"]} == {"ok"}
    assert {p.get("ran_slot") or p["slot"] for p in record["partitions"] if p["slot"] == first} == {second}


def test_a_worker_joins_once_the_scheduler_runs_it_and_a_joined_one_that_pauses_stays():
    """Pure logic beside the real late-worker test: a worker the scheduler registered but does not
    run yet gets nothing (a batch for it would run elsewhere, behind what runs there)."""
    from agi_core.executors.dask_elastic import ElasticBatches

    class Scheduler:
        def __init__(self) -> None:
            self.workers: dict = {}

        async def identity(self, n_workers: int = -1) -> dict:
            return {"workers": self.workers}

    class Client:
        scheduler = Scheduler()

    async def report(joined: set[str]) -> str:
        return ""

    async def go() -> list:
        client = Client()
        batches = ElasticBatches(client, {"s0": "w0", "s1": "w1"}, emit=lambda e: None, join_wait=60, report=report)
        seen = []
        client.scheduler.workers = {"tcp://a": {"name": "w0", "status": "running"}, "tcp://b": {"name": "w1", "status": "init"}}
        seen.append(await batches.refresh(announce=False))
        client.scheduler.workers["tcp://b"]["status"] = "running"
        seen.append(await batches.refresh(announce=False))
        client.scheduler.workers["tcp://a"]["status"] = "paused"
        seen.append(await batches.refresh(announce=False))
        return seen

    assert asyncio.run(go()) == [(["s0"], []), (["s1"], []), ([], [])]


def test_a_worker_that_retires_is_drained_first_and_its_replacement_takes_the_rest(ledger_env, tmp_path):
    """A worker with a lifetime (a Slurm job's, before its walltime) is drained ``drain`` seconds
    before it retires: it takes no new batch, finishes what it holds, and the backend is told
    (`retiring`: here it starts the "replacement", a late worker) — nothing runs twice."""
    share, ledger, replace = tmp_path / "share", tmp_path / "ledger.txt", tmp_path / "replace"
    share.mkdir()
    base = _cluster(share, min_workers=1, join_timeout=60)
    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=base, n=24))
    first, second = sorted(plan.assignment)
    events: list = []
    # the second worker starts when the backend is told that the first one retires
    options = {"late": {second: str(replace)}, "lifetime": {first: 8.0}, "drain": 5.0, "replace": str(replace)}
    thread, box = _start(ledger_env, {**base, "elastictest": options}, {"n": 24, "sleep": 0.4, "ledger": str(ledger)}, events)
    thread.join(120)
    assert "error" not in box, box
    ran = Counter(pid for pid, _ in _ledger(ledger))
    assert ran == Counter({p.id: 1 for p in plan.partitions})  # each work() ran exactly once
    texts = [e.text for e in events if hasattr(e, "text")]
    assert any(t.startswith(f"worker {first} retires in ") for t in texts), texts
    order = [(type(e).__name__, e.slot) for e in events if isinstance(e, WorkerJoined | WorkerLeft)]
    assert ("WorkerLeft", first) not in order[:order.index(("WorkerJoined", second))]  # the replacement came first
    # (it leaves while the run goes, or after it ended)
    assert {e.reason for e in events if isinstance(e, WorkerLeft)} <= {"retired (its lifetime)"}
    record = _record(share)
    assert {p["status"] for p in record["partitions"]} == {"ok"} and not any(p.get("retries") for p in record["partitions"])
    ran_on = Counter(p.get("ran_slot") or p["slot"] for p in record["partitions"])
    assert ran_on[first] and ran_on[second]
