"""Elastic runs on the single-node Slurm (`tests.slurm_fixtures`): a worker job cancelled before
its worker joined, or held pending, does not stop the run (``[cluster] min_workers`` is 1 for
Slurm); the record names the worker that never joined and Slurm's word on its job."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

from agi_core import AGI, AgiEnv
from agi_core.base.events import Notice, PartitionDone, Phase, WorkerJoined, WorkerLeft
from tests.conftest import TEST_APPS
from tests.slurm_fixtures import slurm  # noqa: F401 - the session's Slurm
from tests.test_slurm import dask_workers_left, slurm_cluster


def _on_queued(action: list[str], done: list[str]):
    """An event sink that runs ``action + [the second job's id]`` as soon as the jobs are queued
    (before any worker could join)."""

    def look(event: object) -> None:
        if isinstance(event, Phase) and "Slurm job(s) queued: " in event.detail and not done:
            jobs = event.detail.split("queued: ")[1].split(";")[0].split(", ")
            done.append(max(jobs, key=int))
            subprocess.run([*action, done[0]], check=True, capture_output=True)

    return look


def _run(tmp_path: Path, sink) -> dict:
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    cluster = slurm_cluster(tmp_path)
    result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, n=8, sleep=0.2, on_event=sink))
    assert result.status == "ok" and result.value == sum(i * i for i in range(8))
    record = json.loads(result.manifest.read_text())
    ids = sorted(p["id"] for p in record["partitions"])
    assert ids == sorted(f"p{i}" for i in range(8))  # each exactly once
    assert {p["status"] for p in record["partitions"]} == {"ok"}
    return record


def test_a_job_cancelled_before_its_worker_joined_leaves_the_run_to_the_other(slurm, tmp_path):  # noqa: F811
    cancelled: list[str] = []
    record = _run(tmp_path, _on_queued(["scancel"], cancelled))
    assert cancelled[0] not in {p["job_id"] for p in record["partitions"]}  # (a replacement job may have taken some)
    (absent,) = record["cluster"]["never_joined"]  # the cancelled job's worker
    assert f"Slurm job {cancelled[0]} ({absent})" in record["cluster"]["never_joined_report"]
    assert slurm.queue() == [] and not dask_workers_left()


def test_a_job_held_pending_does_not_hold_the_run_and_its_reason_is_recorded(slurm, tmp_path):  # noqa: F811
    held: list[str] = []
    record = _run(tmp_path, _on_queued(["scontrol", "hold"], held))
    (absent,) = record["cluster"]["never_joined"]  # the held job's worker
    assert f"Slurm job {held[0]} ({absent}): PENDING" in record["cluster"]["never_joined_report"]
    assert "JobHeld" in record["cluster"]["never_joined_report"]
    assert slurm.queue() == []  # the held job was cancelled with the cluster


def _replaced(events: list) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice) and "replacement job" in e.text]


def test_a_job_cancelled_after_its_worker_joined_is_replaced_and_every_partition_runs_once(slurm, tmp_path):  # noqa: F811
    events: list = []
    cancelled: list[str] = []

    def sink(event: object) -> None:
        events.append(event)
        if isinstance(event, Phase) and "Slurm job(s) queued: " in event.detail:
            cancelled.append(max(event.detail.split("queued: ")[1].split(";")[0].split(", "), key=int))
        if isinstance(event, PartitionDone) and len(cancelled) == 1:  # both workers joined (min_workers = "all") and work
            cancelled.append("done")
            subprocess.run(["scancel", cancelled[0]], check=True, capture_output=True)

    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    cluster = {**slurm_cluster(tmp_path), "min_workers": "all"}
    result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, n=16, sleep=1.0, on_event=sink))
    assert result.status == "ok" and result.value == sum(i * i for i in range(16))
    (replaced,) = _replaced(events)
    assert f"Slurm job {cancelled[0]} (slurm-" in replaced and ") ended (" in replaced  # (job ids and names may pair either way)
    assert "(slurm-2) submitted (3 of [cluster.slurm] max_jobs = 20)" in replaced
    new_job = replaced.split("replacement job ")[1].split()[0]
    assert any(isinstance(e, WorkerJoined) and e.slot == "slurm-2" for e in events)  # the replacement's worker took work
    record = json.loads(result.manifest.read_text())
    assert sorted(p["id"] for p in record["partitions"]) == sorted(f"p{i}" for i in range(16))  # each exactly once
    assert {p["status"] for p in record["partitions"]} == {"ok"}
    assert new_job in {p["job_id"] for p in record["partitions"]}
    assert slurm.queue() == [] and not dask_workers_left()


def test_a_worker_drains_before_its_walltime_its_replacement_joins_before_it_leaves_and_nothing_runs_twice(slurm, tmp_path):  # noqa: F811
    events: list = []
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    ledger = tmp_path / "ledger.txt"  # one line per work() that ran
    # a 60 s walltime whose worker retires 40 s before it (20 s after it started) and takes no new
    # partition 12 s before that: it works ~6 s (at most 8 of the n one-second partitions), its
    # replacement (submitted then: it has 12 s to join, ~1 s on an idle machine) does the rest
    cluster = slurm_cluster(tmp_path, jobs=1, walltime="00:01:00", walltime_margin=40, walltime_stagger=0, walltime_drain=12)
    cluster["dask"] = {**cluster["dask"], "max_tasks_per_slot": 64}  # one partition per batch
    n = 12  # work left at the first drain (>= 4 partitions), not a longer chain of replacements
    args = {"n": n, "sleep": 1.0, "ledger": str(ledger)}
    result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, args=args, use_cache=False, on_event=events.append))
    assert result.status == "ok" and result.value == sum(range(n))
    texts = [e.text for e in events if isinstance(e, Notice)]
    # each job's worker drains ~8 s after it started: a chain of jobs, each replaced ahead, none after it ended
    chain = [re.fullmatch(r"Slurm job (\d+) \((slurm-\d+)\) retires before its walltime with work left: "
                          r"replacement job (\d+) \((slurm-\d+)\) submitted ahead \(\d+ of .*\)", text) for text in _replaced(events)]
    assert chain and all(chain) and chain[0][2] == "slurm-0", _replaced(events)
    order = [(type(e).__name__, e.slot) for e in events if isinstance(e, WorkerJoined | WorkerLeft)]
    for link in chain:
        assert texts.index(link[0]) > texts.index(next(t for t in texts if t.startswith(f"worker {link[2]} retires in ")))
        if ("WorkerJoined", link[4]) in order:  # (the last one may come after the work is done)
            assert ("WorkerLeft", link[2]) not in order[:order.index(("WorkerJoined", link[4]))]  # joined before the old one left
    first, second = chain[0][1], chain[0][3]
    record = json.loads(result.manifest.read_text())
    ran = sorted(line.split()[0] for line in ledger.read_text().splitlines())
    assert ran == sorted(f"l{i}" for i in range(n))  # every work() ran exactly once: none lost, none twice
    assert sorted(p["id"] for p in record["partitions"]) == ran and {p["status"] for p in record["partitions"]} == {"ok"}
    assert [p.get("retries", 0) for p in record["partitions"]] == [0] * n  # the drained worker finished its own
    jobs = {p["job_id"] for p in record["partitions"]}  # the record names the job each partition ran in
    assert {first, second} <= jobs <= {first, *(link[3] for link in chain)}
    assert slurm.queue() == [] and not dask_workers_left()


def test_workers_retire_a_margin_before_the_walltime_and_a_walltime_too_short_is_refused():
    import pytest
    from pydantic import ValidationError

    from agi_core.cluster.slurm import SlurmCluster
    from agi_core.cluster.slurm_options import SlurmSettings
    from agi_core.settings import ClusterSettings

    assert SlurmSettings(walltime="01:00:00").lifetime() == 3600 - 120 - 60  # then ± 60 s at random: never past 3480 s
    cluster = ClusterSettings.model_validate({"backend": "slurm", "slurm": {"walltime": "00:30:00", "walltime_margin": 300}})
    from agi_core.base.modes import Mode
    from agi_core.cluster import spec_for

    script = SlurmCluster(spec_for(cluster, Mode.parse("d"), "mandelbrot")).job_script()
    assert "--lifetime 1440s --lifetime-stagger 60s --no-lifetime-restart" in script
    with pytest.raises(ValidationError, match=r"walltime = '2' \(120 s\) leaves a worker no time"):
        SlurmSettings(walltime="2")
    assert SlurmSettings(jobs=3).job_limit() == 30 and SlurmSettings(jobs=3, max_jobs=4).job_limit() == 4
    with pytest.raises(ValidationError, match="max_jobs = 2 is below jobs = 3"):
        SlurmSettings(jobs=3, max_jobs=2)


def _sbatch(tmp_path: Path, *options: str) -> str:
    from agi_testkit.slurm import PARTITION

    out = subprocess.run(["sbatch", "--parsable", "-p", PARTITION, "-o", str(tmp_path / "%j.out"), *options, "--wrap", "sleep 60"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split(";")[0]


def test_the_keeper_cancels_a_job_pending_too_long_naming_the_reason_and_replaces_an_ended_one(slurm, tmp_path):  # noqa: F811
    """`JobKeeper` against the real queue: a held job past pending_timeout is cancelled (not
    replaced: another would wait the same); a job that ended is replaced while work is left, up
    to max_jobs."""
    import time

    from agi_core.cluster.slurm_requeue import JobKeeper

    held, ending = _sbatch(tmp_path, "--hold"), _sbatch(tmp_path)
    subprocess.run(["scancel", ending], check=True)
    keeper = JobKeeper({"slurm-0": held, "slurm-1": ending}, limit=3, pending_timeout=0.5)
    submitted: list[str] = []

    async def submit(name: str) -> str:
        submitted.append(name)
        return _sbatch(tmp_path)

    time.sleep(0.6)
    said: list = []
    asyncio.run(keeper.tend(submit, work_left=True, emit=said.append))
    texts = [e.text for e in said]
    import re

    assert re.search(rf"Slurm job {held} \(slurm-0\) still pending after \d+ s \(reason: JobHeldUser\): cancelled", texts[0]), texts
    assert submitted == ["slurm-2"] and f"Slurm job {ending} (slurm-1) ended (" in texts[1] and "(slurm-2) submitted (3 of" in texts[1]
    assert keeper.ended[held].startswith("cancelled after ") and keeper.ended[held].endswith("pending (reason: JobHeldUser)")
    subprocess.run(["scancel", keeper.jobs["slurm-2"]], check=True)
    keeper._last = 0.0  # look again now
    asyncio.run(keeper.tend(submit, work_left=True, emit=said.append))
    assert submitted == ["slurm-2"] and "is not replaced: this run submitted 3 job(s), [cluster.slurm] max_jobs = 3" in said[-1].text
    assert said[-1].level == "warning"
    deadline = time.monotonic() + 20
    while slurm.queue() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.queue() == []


def test_the_keeper_replaces_a_retiring_job_ahead_once_and_not_again_when_it_ends(slurm, tmp_path):  # noqa: F811
    """`JobKeeper.replace_ahead` against the real queue: a worker of a running job retires soon →
    one replacement job now (a second worker of the same job asks again: none more); without
    work left, none; when the retired job ends, it is not replaced a second time."""
    import time

    from agi_core.cluster.slurm_requeue import JobKeeper

    running = _sbatch(tmp_path)
    keeper = JobKeeper({"slurm-0": running}, limit=5, pending_timeout=600)
    submitted: list[str] = []

    async def submit(name: str) -> str:
        submitted.append(name)
        return _sbatch(tmp_path)

    said: list = []
    asyncio.run(keeper.replace_ahead("slurm-0-1", submit, work_left=False, emit=said.append))
    assert submitted == [] and said == []  # nothing left to do: no replacement
    asyncio.run(keeper.replace_ahead("slurm-0-1", submit, work_left=True, emit=said.append))
    asyncio.run(keeper.replace_ahead("slurm-0-0", submit, work_left=True, emit=said.append))  # the same job's other worker
    assert submitted == ["slurm-1"] and len(said) == 1
    assert said[0].text == (f"Slurm job {running} (slurm-0) retires before its walltime with work left: replacement job "
                            f"{keeper.jobs['slurm-1']} (slurm-1) submitted ahead (2 of [cluster.slurm] max_jobs = 5)")
    subprocess.run(["scancel", running], check=True)
    deadline = time.monotonic() + 20
    while running not in keeper.ended and time.monotonic() < deadline:
        keeper._last = 0.0  # look again now
        asyncio.run(keeper.tend(submit, work_left=True, emit=said.append))
        time.sleep(0.2)
    assert running in keeper.ended and submitted == ["slurm-1"] and len(said) == 1  # ended, replaced already: not again
    subprocess.run(["scancel", keeper.jobs["slurm-1"]], check=True)
    while slurm.queue() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.queue() == []
