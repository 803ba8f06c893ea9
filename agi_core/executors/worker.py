"""The Dask task of a run: a batch of partitions run in order on a worker, its outcomes sent back as
one frame. Dask pickles `run_batch` by reference, so workers import this module (`install.code_hash`).

What runs each partition is `partition_runner` (loaded once per job and process, `_runner`); this
module is what is around it on a Dask worker: the batch's dependencies, its started log (exact
re-run counts after a lost worker), and what it tells the scheduler runs here.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import socket
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..provenance.lines import partition_line
from .attempts import StartedLog, started_dir
from .base import JobSpec, Outcome
from .partition_runner import PartitionRunner
from .wire import pack_outcomes, read_outcomes

__all__ = ["pack", "run_batch", "unpack"]


@functools.lru_cache(maxsize=4)
def _runner(job_json: str) -> PartitionRunner:
    """One runner per job and worker process: the app is imported and set up once, not per task."""
    data = json.loads(job_json)
    paths = {name: Path(data[name]) if data.get(name) is not None else None
             for name in ("src_dir", "out_dir", "cache_dir", "inputs_base")}
    job = JobSpec(**{**data, **paths, "refresh": tuple(data.get("refresh", ())), "kernels": tuple(data.get("kernels", ("python",)))})
    return PartitionRunner(job, prefer_installed=True)


def run_batch(job_json: str, packed_parts: bytes, slot: str, deps: Mapping[str, bytes]) -> bytes:
    """Dask task: run a batch of partitions in order on this worker.

    Partitions come, with their cache keys ("" without the cache) and audit digests ("" unless
    audited), as one pickle (`pack`), and
    outcomes go back as one frame (`wire.pack_outcomes`): Dask serialises a list element by
    element, which made 100,000 tiny partitions cost 100,000 frames each way. Dependencies
    arrive as their tasks' packed outcomes; when one of them did not succeed, the batch is
    skipped, and when this worker cannot load one's result, the batch fails saying so. Each
    outcome names the Dask worker that really ran it (which differs from ``slot`` when Dask
    moved the task after a failure). Nothing the app raises leaves as an exception (the manager
    might not be able to load it): its traceback is the partitions' error. Each partition is
    noted in the task's started log before its work() (`attempts`): when Dask runs the task
    again after losing a worker, the partitions that had started there say how often (``retries``).
    """
    from distributed import get_worker

    parts = unpack(packed_parts)
    host = socket.gethostname()
    try:
        worker = str(get_worker().name)
    except ValueError:  # not on a Dask worker (direct call in a test)
        worker = f"{host}:{os.getpid()}"
    inputs = {}
    for dep, packed in deps.items():
        (done,), unreadable = read_outcomes(packed, f"worker {worker}")
        if done.id in unreadable:
            error = f"its dependency {dep}: {unreadable[done.id]}"
            return pack_outcomes([Outcome(part.id, slot, "failed", host, worker, error=error) for part, *_ in parts])
        if not done.ok:  # DAG nodes are submitted up front: a failed dependency means skip
            error = f"dependency {dep} did not succeed"
            return pack_outcomes([Outcome(part.id, slot, "skipped", error=error) for part, *_ in parts])
        inputs[dep] = done.result
    try:
        runner = _runner(job_json)
    except Exception:  # noqa: BLE001 - loading the app failed: each partition's failure, as in a pool slot
        error = traceback.format_exc()
        return pack_outcomes([Outcome(part.id, slot, "failed", host, worker, error=error) for part, *_ in parts])
    from .dask_watch import running_partition

    watch = running_partition()  # tells the manager, through the scheduler, what runs here and since when
    outcomes = []
    with StartedLog.open(started_dir(runner.job.out_dir), parts[0][0].id if parts else "") as started:
        budget = runner.job.retries
        for index, (part, key, audit) in enumerate(parts):
            lost = started.lost_in.get(index, 0)
            if lost > budget:  # it is what keeps killing this task's workers: the others still run
                outcome = Outcome(part.id, slot, "failed", host, worker, error=f"its worker was lost {lost} times while it ran "
                                  f"([cluster] retries = {budget}): not run again")
                _count_retries(outcome, started.before.get(index, 0))
                outcomes.append(outcome)
                continue
            before = started.mark(index)  # on the share before work() runs: a re-run of this task will know
            if watch is not None:
                watch.started(part.id)
            outcome = runner.run(part, slot, inputs, worker=worker, key=key, audit=audit)
            if before:
                _count_retries(outcome, before)
            outcomes.append(outcome)
        started.finish()
    if watch is not None:
        watch.finished()
    runner.flush()  # the batch's entries, as one pack, before its outcomes go
    return pack_outcomes(outcomes)


def _count_retries(outcome: Outcome, before: int) -> None:
    """``outcome``'s partition had started ``before`` times on workers that were lost (`attempts`)."""
    outcome.retries = before
    outcome.line = partition_line(outcome)


def pack(items: list[Any]) -> bytes:
    """A batch's partitions as one pickle, for Dask to move as a single frame (outcomes: `wire`)."""
    return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> list[Any]:
    return pickle.loads(data)
