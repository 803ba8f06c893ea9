"""A warm Slurm cluster (`agi cluster up`) tended by the runs attached to it (`slurm_warm`): a run
longer than one walltime gets replacement jobs, a cancelled job is replaced, jobs that ended while
no run was attached are replaced by the next one as it attaches, the replacements are the
cluster's (status lists them, down cancels them), and two runs never replace one job twice."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import subprocess
import time
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv, Mode
from agi_core.base.events import Notice, PartitionDone
from agi_core.cluster import WarmClusters, spec_for
from agi_core.cluster.manage import cluster_down, cluster_status, cluster_up
from agi_core.cluster.slurm_warm import WarmJobs
from tests.conftest import TEST_APPS
from tests.slurm_fixtures import slurm  # noqa: F401 - the session's Slurm
from tests.test_slurm import dask_workers_left, slurm_cluster


@pytest.fixture(autouse=True)
def warm_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return WarmClusters.default()


# -- who replaces an ended job: the state file decides, under its lock ----------------------------


def _shared(folder: Path) -> WarmJobs:
    """A warm cluster's state file with two jobs, as `agi cluster up` writes it (`WarmClusters.load`)."""
    path = folder / "toy.json"
    path.write_text(json.dumps({"app": "toy", "started": 1.5, "jobs": {"slurm-0": "11", "slurm-1": "12"},
                                "job_script": "#!/bin/sh\nworker --name @AGI_WORKER_NAME@\n", "replaced": {}}))
    shared = WarmJobs.of({**json.loads(path.read_text()), "state_file": str(path)})
    assert shared is not None
    return shared


def test_an_ended_job_is_claimed_once_the_limit_holds_and_cluster_down_stops_new_claims(tmp_path):
    shared = _shared(tmp_path)
    first = shared.claim("11", limit=4)
    assert first.name == "slurm-2" and first.jobs == 3  # one past the highest j
    assert shared.claim("11", limit=4).taken == ("slurm-2", "")  # another run: taken, being submitted
    assert shared.record("slurm-2", "13")
    assert shared.claim("11", limit=4).taken == ("slurm-2", "13")
    other = shared.claim("12", limit=4)
    assert other.name == "slurm-3"
    shared.release("12", "slurm-3")  # its sbatch failed: the claim and the name go back
    assert shared.claim("12", limit=3).refused == "the warm cluster has 3 job(s), [cluster.slurm] max_jobs = 3"
    state = WarmClusters(tmp_path).stopping("toy")
    assert state is not None and state["jobs"] == {"slurm-0": "11", "slurm-1": "12", "slurm-2": "13"}
    assert shared.claim("12", limit=9).refused == "the warm cluster is being stopped (`agi cluster down`)"
    assert not shared.record("slurm-9", "99")  # a job submitted meanwhile is not recorded: its run cancels it
    WarmClusters(tmp_path).forget("toy")
    assert shared.claim("12", limit=9).refused == "the warm cluster was stopped (`agi cluster down`)"


def _claim_all(shared: WarmJobs, ended: list[str], won: multiprocessing.Queue) -> None:
    for job_id in ended:
        claim = shared.claim(job_id, limit=1000)
        if claim.name is not None:
            shared.record(claim.name, f"{job_id}-{claim.name}")
            won.put((job_id, claim.name))
    won.put(None)


def test_runs_racing_on_the_same_ended_jobs_replace_each_once_under_distinct_names(tmp_path):
    shared = _shared(tmp_path)
    ended = [str(100 + i) for i in range(30)]
    context = multiprocessing.get_context("fork")
    won: multiprocessing.Queue = context.Queue()
    racers = [context.Process(target=_claim_all, args=(shared, ended, won)) for _ in range(4)]
    for racer in racers:
        racer.start()
    wins, finished = [], 0
    while finished < len(racers):
        item = won.get(timeout=60)
        finished += item is None
        wins += [item] if item is not None else []
    for racer in racers:
        racer.join(timeout=60)
    assert sorted(job_id for job_id, _ in wins) == ended  # each ended job replaced by exactly one process
    assert len({name for _, name in wins}) == len(ended)  # no two replacements share a worker name
    state = json.loads(shared.path.read_text())
    assert len(state["jobs"]) == 2 + len(ended) and all(state["jobs"].values())  # none lost between writers
    assert state["replaced"] == {job_id: name for job_id, name in wins}


# -- on the real single-node Slurm ----------------------------------------------------------------


def _spec(env: AgiEnv, cluster: dict):
    return spec_for(env.settings(cluster=cluster).cluster, Mode.parse("d"), env.name, app_distribution=env.distribution,
                    app_version=env.version())


def _notices(events: list, words: str) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice) and words in e.text]


def test_a_run_on_a_warm_cluster_longer_than_its_walltime_gets_replacement_jobs_that_down_cancels(slurm, tmp_path):  # noqa: F811
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    ledger = tmp_path / "ledger.txt"  # one line per work() that ran
    # one 60 s job whose worker retires 40 s before the walltime (20 s after it started) and takes no new
    # partition 12 s before that: each job works ~8 s, its replacement submitted ahead does the next part
    cluster = slurm_cluster(tmp_path, jobs=1, walltime="00:01:00", walltime_margin=40, walltime_stagger=0, walltime_drain=12)
    cluster["dask"] = {**cluster["dask"], "max_tasks_per_slot": 64}  # one partition per batch
    events: list = []
    try:
        up = asyncio.run(cluster_up("ledger", _spec(env, cluster)))
        (first,) = [str(p.pid) for p in up.processes if p.role == "worker"]
        args = {"n": 20, "sleep": 1.0, "ledger": str(ledger)}
        result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, args=args, use_cache=False, on_event=events.append))
        assert result.status == "ok" and result.value == sum(range(20))
        replaced = _notices(events, "replacement job")
        assert replaced and all("submitted ahead for the warm cluster" in text for text in replaced), replaced
        record = json.loads(result.manifest.read_text())
        assert record["cluster"]["warm"] is True
        ran = sorted(line.split()[0] for line in ledger.read_text().splitlines())
        assert ran == sorted(f"l{i}" for i in range(20))  # every work() ran exactly once: none lost, none twice
        assert sorted(p["id"] for p in record["partitions"]) == ran and {p["status"] for p in record["partitions"]} == {"ok"}
        jobs = {p["job_id"] for p in record["partitions"]}
        assert first in jobs and len(jobs) >= 2  # the record names the jobs each partition ran in
        status = asyncio.run(cluster_status("ledger"))  # the replacements are the warm cluster's now
        listed = {str(p.pid) for p in status.processes if p.role == "worker"}
        assert jobs <= listed and len(listed) == 1 + len(replaced)
    finally:
        asyncio.run(cluster_down("ledger"))
    assert slurm.queue() == [] and not dask_workers_left()


def _ended(job_id: str, timeout: float = 20.0) -> bool:
    """Whether Slurm lists the job as running no more within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        look = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False, capture_output=True, text=True)
        if look.stdout.strip() in ("", "CANCELLED", "COMPLETED"):
            return True
        time.sleep(0.2)
    return False


def test_a_cancelled_warm_job_is_replaced_and_jobs_ended_between_runs_are_when_the_next_attaches(
        slurm, tmp_path):  # noqa: F811
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    cluster = slurm_cluster(tmp_path, jobs=2)
    events: list = []
    cancelled: list[str] = []

    def sink(event: object) -> None:
        events.append(event)
        if isinstance(event, PartitionDone) and not cancelled:
            cancelled.append(first["slurm-0"])
            subprocess.run(["scancel", first["slurm-0"]], check=True, capture_output=True)

    try:
        up = asyncio.run(cluster_up("toy", _spec(env, cluster)))
        first = {p.name: str(p.pid) for p in up.processes if p.role == "worker"}
        result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, n=16, sleep=0.6, on_event=sink))
        assert result.status == "ok" and result.value == sum(i * i for i in range(16))
        (replaced,) = _notices(events, "replacement job")
        assert replaced.startswith(f"Slurm job {first['slurm-0']} (slurm-0) ended (")
        assert replaced.endswith("(slurm-2) submitted for the warm cluster (3 of [cluster.slurm] max_jobs = 20)")
        new_job = replaced.split("replacement job ")[1].split()[0]
        record = json.loads(result.manifest.read_text())
        assert sorted(p["id"] for p in record["partitions"]) == sorted(f"p{i}" for i in range(16))  # each exactly once
        assert new_job in {p["job_id"] for p in record["partitions"]}  # the replacement's worker took work
        state = json.loads(WarmClusters.default().path("toy").read_text())
        assert state["jobs"] == {**first, "slurm-2": new_job} and state["replaced"] == {first["slurm-0"]: "slurm-2"}

        # between runs, both jobs end: nobody watches them; the next run replaces them as it attaches
        subprocess.run(["scancel", first["slurm-1"], new_job], check=True, capture_output=True)
        assert _ended(first["slurm-1"]) and _ended(new_job)
        events.clear()
        again = asyncio.run(AGI.run(env, mode="d", cluster=cluster, n=12, sleep=0.2, use_cache=False, on_event=events.append))
        assert again.status == "ok"
        later = _notices(events, "replacement job")
        assert sorted(text.split(" with work left")[0].split(" ended (")[0] for text in later) == sorted(
            [f"Slurm job {first['slurm-1']} (slurm-1)", f"Slurm job {new_job} (slurm-2)"])
        assert sorted(text.split(" submitted for the warm cluster ")[1] for text in later) == [
            "(4 of [cluster.slurm] max_jobs = 20)", "(5 of [cluster.slurm] max_jobs = 20)"]
        later_jobs = {text.split("replacement job ")[1].split()[0]: text.split("replacement job ")[1].split()[1].strip("()")
                      for text in later}
        assert sorted(later_jobs.values()) == ["slurm-3", "slurm-4"]
        rerun = json.loads(again.manifest.read_text())
        assert sorted(p["id"] for p in rerun["partitions"]) == sorted(f"p{i}" for i in range(12))
        assert {p["job_id"] for p in rerun["partitions"]} <= set(later_jobs)  # only the new jobs' workers ran them
        assert {p["slot"] for p in rerun["partitions"]} == {"slurm-0", "slurm-1"}  # the plan's slots, served by them
        status = asyncio.run(cluster_status("toy"))
        listed = {p.name: str(p.pid) for p in status.processes if p.role == "worker"}
        assert listed == {**first, "slurm-2": new_job, **{name: job for job, name in later_jobs.items()}}
    finally:
        stopped = asyncio.run(cluster_down("toy"))
    assert stopped == 6  # the scheduler and five jobs: three cancelled (gone already), two running
    assert slurm.queue() == [] and not dask_workers_left()
