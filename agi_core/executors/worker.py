"""The worker side of a run: load the app once per process, then run partitions one at a time."""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import socket
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..app import App, Partition, WorkContext
from ..cache import CacheStore, EntryWriter
from ..env import load_app_class
from ..kernels import KernelChoice, select_kernels
from ..modes import Mode
from ..provenance.lines import partition_line
from .base import JobSpec, Outcome

__all__ = ["PartitionRunner", "pack", "run_batch", "unpack"]


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
        self.job_id = os.environ.get("SLURM_JOB_ID", "")  # a worker in a Slurm job: the record names the job
        self._loggers: dict[str, logging.Logger] = {}
        job.out_dir.mkdir(parents=True, exist_ok=True)
        self.cache = CacheStore(job.cache_dir) if job.cache_dir is not None else None
        self._buffers = threading.local()  # a Dask worker's threads run batches at once: each buffers its own entries
        self._refresh = frozenset(job.refresh)

    def context(self, slot: str, deps: Mapping[str, Any] | None = None) -> WorkContext:
        log = self._loggers.get(slot)
        if log is None:
            log = self._loggers[slot] = logging.getLogger(f"agi.app.{self.job.module_name}.{slot}")
        return WorkContext(args=self.args, kernels=self.kernels.module, kernel_kind=self.kernels.kind, device=self.kernels.device,
                           out_dir=self.job.out_dir, log=log, slot=slot, deps=deps if deps is not None else {})

    def run(self, part: Partition, slot: str, deps: Mapping[str, Any] | None = None, *, worker: str | None = None,
            key: str = "") -> Outcome:
        """Run one partition; the outcome carries its result and its record line (made here,
        where the partition ran). ``worker``: the name to record (a Dask worker's). With a cache
        ``key``, a result is stored in the cache from here: it need not pass through the manager."""
        ctx = self.context(slot, deps)
        kernels = self.kernels
        start = time.time()
        try:
            result, status, error = self.app.work(part, ctx), "ok", None
        except Exception:  # noqa: BLE001 - a partition's failure is data for the record, not a crash
            result, status, error = None, "failed", traceback.format_exc()
        outcome = Outcome(part.id, slot, status, self.host, worker or self.worker, start, time.time(), kernels.kind, kernels.device,
                          error, kernels.note, 0, tuple(ctx.outputs), result)
        outcome.job_id = self.job_id
        if key and self.cache is not None:
            self._store(outcome, key)
        outcome.line = partition_line(outcome)
        return outcome

    def _store(self, outcome: Outcome, key: str) -> None:
        """Put an ok result in the cache; a failure to store is noted, never the partition's failure."""
        outcome.key, outcome.cache = key, "miss"
        if outcome.status != "ok":
            return
        if outcome.kernel != self.job.cache_kernel:
            outcome.add_note(f"not cached: it ran the {outcome.kernel} kernels, its key is for {self.job.cache_kernel}")
            return
        buffer = self._buffer()
        try:
            meta = buffer.meta
            if meta.get("kernel") != outcome.kernel or meta.get("worker") != outcome.worker:
                meta = buffer.meta = {"run_id": self.job.run_id, "kernel": outcome.kernel, "worker": outcome.worker}
            location = buffer.writer.add_result(key, outcome.result, outcome.id, meta, out_dir=self.job.out_dir,
                                                outputs=outcome.outputs, replace=outcome.id in self._refresh)
        except Exception as exc:  # noqa: BLE001 - e.g. a full share, or a result that cannot be pickled
            outcome.add_note(f"not cached: {type(exc).__name__}: {exc}")
            return
        outcome.cache, outcome.location = "stored", location
        buffer.unflushed.append(outcome)

    def _buffer(self) -> _Buffer:
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None:
            assert self.cache is not None
            buffer = self._buffers.buffer = _Buffer(self.cache.writer())
        return buffer

    def flush(self) -> None:
        """Write the cache entries this thread buffered as one pack. Call it before outcomes that
        say ``stored`` leave: a reported entry is on the share. If writing fails, those outcomes
        say ``miss`` with the reason (the partitions themselves succeeded)."""
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None or not buffer.unflushed:
            return
        pending, buffer.unflushed = buffer.unflushed, []
        try:
            buffer.writer.flush()
        except Exception as exc:  # noqa: BLE001 - e.g. a full share: the results are still good
            for outcome in pending:
                outcome.cache, outcome.location = "miss", ""
                outcome.add_note(f"not cached: {type(exc).__name__}: {exc}")
                outcome.line = partition_line(outcome)


@dataclass
class _Buffer:
    """One thread's cache entries not written yet, and the outcomes that report them."""

    writer: EntryWriter
    unflushed: list[Outcome] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)  # what its entries say stored them: one dict while it stays the same


@functools.lru_cache(maxsize=4)
def _runner(job_json: str) -> PartitionRunner:
    """One runner per job and worker process: the app is imported and set up once, not per task."""
    data = json.loads(job_json)
    paths = {name: Path(data[name]) if data.get(name) is not None else None for name in ("src_dir", "out_dir", "cache_dir")}
    job = JobSpec(**{**data, **paths, "refresh": tuple(data.get("refresh", ()))})
    return PartitionRunner(job, prefer_installed=True)


def run_batch(job_json: str, packed_parts: bytes, slot: str, deps: Mapping[str, bytes]) -> bytes:
    """Dask task: run a batch of partitions in order on this worker.

    Partitions come, with their cache keys ("" without the cache), and outcomes go as one pickle
    each (`pack`): Dask serialises a list element
    by element, which made 100,000 tiny partitions cost 100,000 frames each way. Dependencies
    arrive as their tasks' packed outcomes; when one of them did not succeed, the batch is
    skipped. Each outcome names the Dask worker that really ran it (which differs from
    ``slot`` when Dask moved the task after a failure).
    """
    from distributed import get_worker

    runner = _runner(job_json)
    try:
        worker = str(get_worker().name)
    except ValueError:  # not on a Dask worker (direct call in a test)
        worker = runner.worker
    inputs = {}
    for dep, packed in deps.items():
        done = unpack(packed)[0]
        if not done.ok:  # DAG nodes are submitted up front: a failed dependency means skip
            return pack([Outcome(part.id, slot, "skipped", error=f"dependency {dep} did not succeed") for part, _ in unpack(packed_parts)])
        inputs[dep] = done.result
    outcomes = []
    for part, key in unpack(packed_parts):
        outcomes.append(runner.run(part, slot, inputs, worker=worker, key=key))
    runner.flush()  # the batch's entries, as one pack, before its outcomes go
    return pack(outcomes)


def pack(items: list[Any]) -> bytes:
    """Partitions or outcomes as one pickle, for Dask to move as a single frame."""
    return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> list[Any]:
    return pickle.loads(data)
