"""The worker side of a run: load the app once per process, then run partitions one at a time."""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..app import App, Partition, WorkContext
from ..env import load_app_class
from ..kernels import KernelChoice, select_kernels
from ..modes import Mode
from .base import JobSpec, Outcome

__all__ = ["PartitionRunner", "run_batch"]


class PartitionRunner:
    """Runs partitions of one job in the current process, catching each failure into its `Outcome`."""

    def __init__(self, job: JobSpec, *, prefer_installed: bool = False) -> None:
        self.job = job
        app_class = load_app_class(job.src_dir, job.module_name, job.class_name, prefer_installed=prefer_installed)
        self.app: App = app_class()
        self.args = app_class.Args.model_validate(dict(job.args))
        self.kernels: KernelChoice = select_kernels(job.module_name.split(".")[0], Mode(job.mode))
        self.host = socket.gethostname()
        self.worker = f"{self.host}:{os.getpid()}"
        job.out_dir.mkdir(parents=True, exist_ok=True)

    def context(self, slot: str, deps: Mapping[str, Any] | None = None) -> WorkContext:
        return WorkContext(
            args=self.args, kernels=self.kernels.module, kernel_kind=self.kernels.kind, device=self.kernels.device,
            out_dir=self.job.out_dir, log=logging.getLogger(f"agi.app.{self.job.module_name}.{slot}"), slot=slot, deps=dict(deps or {}),
        )

    def run(self, part: Partition, slot: str, deps: Mapping[str, Any] | None = None) -> Outcome:
        outcome = Outcome(part.id, slot, "ok", host=self.host, worker=self.worker, kernel=self.kernels.kind,
                          device=self.kernels.device, note=self.kernels.note)
        outcome.start = time.time()
        try:
            outcome.result = self.app.work(part, self.context(slot, deps))
        except Exception:  # noqa: BLE001 - a partition's failure is data for the record, not a crash
            outcome.status = "failed"
            outcome.error = traceback.format_exc()
        outcome.end = time.time()
        return outcome



@functools.lru_cache(maxsize=4)
def _runner(job_json: str) -> PartitionRunner:
    """One runner per job and worker process: the app is imported and set up once, not per task."""
    data = json.loads(job_json)
    job = JobSpec(Path(data["src_dir"]), data["module_name"], data["class_name"], data["args"], data["mode"], Path(data["out_dir"]))
    return PartitionRunner(job, prefer_installed=True)


def run_batch(job_json: str, parts: list[Partition], slot: str, deps: Mapping[str, list[Outcome]]) -> list[Outcome]:
    """Dask task: run ``parts`` in order on this worker; dependencies arrive as their tasks' outcomes.

    A partition whose dependency did not succeed is skipped. Each outcome names the Dask worker
    that really ran it (which differs from ``slot`` when Dask moved the task after a failure).
    """
    from distributed import get_worker

    runner = _runner(job_json)
    try:
        worker = str(get_worker().name)
    except ValueError:  # not on a Dask worker (direct call in a test)
        worker = runner.worker
    outcomes = []
    for part in parts:
        dep_outcomes = {dep: outs[0] for dep, outs in deps.items()}
        failed = [dep for dep, out in dep_outcomes.items() if out.status != "ok"]
        if failed:
            outcome = Outcome(part.id, slot, "skipped", host=runner.host, worker=worker, error=f"dependency {failed[0]} did not succeed")
        else:
            outcome = runner.run(part, slot, {dep: out.result for dep, out in dep_outcomes.items()})
            outcome.worker = worker
        outcomes.append(outcome)
    return outcomes
