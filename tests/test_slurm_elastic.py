"""Elastic runs on the single-node Slurm (`tests.slurm_fixtures`): a worker job cancelled before
its worker joined, or held pending, does not stop the run (``[cluster] min_workers`` is 1 for
Slurm); the record names the worker that never joined and Slurm's word on its job."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from agi_core import AGI, AgiEnv
from agi_core.events import Phase
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
    assert len({p["job_id"] for p in record["partitions"]}) == 1 and cancelled[0] not in {p["job_id"] for p in record["partitions"]}
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
