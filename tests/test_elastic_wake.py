"""A late worker gets work as soon as the scheduler adds it (its ``add-worker`` event), not at the
run's next look at its workers (`dask_tend.WATCH_S`, which added up to 0.5 s to a late joiner's
wait for work; benchmarks/elastic.py compares it with plain Dask).

Real Dask worker processes through the elastic test backend (`tests/elastic_backend.py`) and the
non-idempotent ``ledger`` app, as in tests/test_elastic.py, whose helpers this reuses.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from agi_core import AGI
from agi_core.executors import dask_tend
from tests.test_elastic import _cluster, _ledger, _record, _start, _wait, ledger_env  # noqa: F401 - a fixture


def test_a_late_worker_gets_work_when_the_scheduler_adds_it_not_at_the_next_look(ledger_env, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(dask_tend, "WATCH_S", 3600.0)  # no periodic look during the test: only the event can wake the run
    share, ledger, gate, late = tmp_path / "share", tmp_path / "ledger.txt", tmp_path / "gate", tmp_path / "late"
    share.mkdir()
    base = _cluster(share, min_workers=1)
    plan = asyncio.run(AGI.get_distrib(ledger_env, mode="d", cluster=base, n=16))
    first, second = sorted(plan.assignment)
    held = [p.id for p in plan.partitions if plan.slot_of()[p.id] == first][0]  # holds the only worker until the end
    cluster = {**base, "elastictest": {"late": {second: str(late)}}}
    thread, box = _start(ledger_env, cluster, {"n": 16, "ledger": str(ledger), "hold": held, "gate": str(gate)}, [])
    _wait("the held partition to start", lambda: any(pid == held for pid, _ in _ledger(ledger)), thread, box)
    started_with = {proc for _, proc in _ledger(ledger)}
    late.touch()
    _wait("the late worker to run partitions", lambda: {proc for _, proc in _ledger(ledger)} - started_with, thread, box)
    gate.touch()
    thread.join(120)
    assert "error" not in box, box
    assert Counter(pid for pid, _ in _ledger(ledger)) == Counter({p.id: 1 for p in plan.partitions})
    parts = _record(share)["partitions"]
    assert any((p.get("ran_slot") or p["slot"]) == second for p in parts)
