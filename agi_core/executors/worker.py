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
from typing import TYPE_CHECKING, Any

from ..app import App, Partition, WorkContext
from ..env import load_app_class
from ..execution_shape import ExecutionShape
from ..kernels import KernelChoice, select_kernels
from ..provenance.lines import partition_line
from .attempts import StartedLog, started_dir
from .base import JobSpec, Outcome
from .file_reads import ReadWatch, ignored_folders
from .wire import pack_outcomes, read_outcomes

if TYPE_CHECKING:
    from ..cache import CacheStore, EntryWriter

__all__ = ["PartitionRunner", "pack", "run_batch", "unpack"]


class PartitionRunner:
    """Runs partitions of one job in the current process, catching each failure into its `Outcome`."""

    def __init__(self, job: JobSpec, *, prefer_installed: bool = False) -> None:
        self.job = job
        app_class = load_app_class(job.src_dir, job.module_name, job.class_name, prefer_installed=prefer_installed)
        self.app: App = app_class()
        self.args = app_class.Args.model_validate(dict(job.args))
        shape = ExecutionShape(kernels=tuple(job.kernels), pooled=job.kernel_threads == 1)
        self.kernels: KernelChoice = select_kernels(job.module_name.split(".")[0], shape)
        self.host = socket.gethostname()
        self.worker = f"{self.host}:{os.getpid()}"
        # a worker in a batch job or pod: the record names it (`ClusterBackend.job_id_env`)
        self.job_id = os.environ.get(job.job_id_env, "") if job.job_id_env else ""
        self._loggers: dict[str, logging.Logger] = {}
        if job.share_umask is not None:  # what this worker creates on the share: the run's modes (`share_access`)
            os.umask(job.share_umask)
        job.out_dir.mkdir(parents=True, exist_ok=True)
        # entries are tagged with the manager's key, as this worker finds it (`cache.auth.worker_key`)
        self.cache: CacheStore | None = None
        if job.cache_dir is not None:  # imported when used: a run without the cache starts without the package
            from ..cache import CacheStore
            from ..cache.auth import worker_key

            self.cache = CacheStore(job.cache_dir, key=worker_key(job.cache_key_id))
        # a Dask worker's threads run batches at once: each buffers its own entries, and has its own idle `ReadWatch`
        self._buffers = threading.local()
        self._refresh = frozenset(job.refresh)
        # what undeclared reads never count: the app's code, the run's outputs, the cache itself
        self._not_inputs = ignored_folders(p for p in (job.src_dir, job.out_dir, job.cache_dir) if p is not None)
        self._audit = job.audit

    def context(self, slot: str, deps: Mapping[str, Any] | None = None) -> WorkContext:
        log = self._loggers.get(slot)
        if log is None:
            log = self._loggers[slot] = logging.getLogger(f"agi.app.{self.job.module_name}.{slot}")
        return WorkContext(args=self.args, kernels=self.kernels.module, kernel_kind=self.kernels.kind, device=self.kernels.device,
                           out_dir=self.job.out_dir, log=log, slot=slot, deps=deps if deps is not None else {})

    def run(self, part: Partition, slot: str, deps: Mapping[str, Any] | None = None, *, worker: str | None = None,
            key: str = "", audit: str = "") -> Outcome:
        """Run one partition; the outcome carries its result and its record line (made here,
        where the partition ran). ``worker``: the name to record (a Dask worker's). With a cache
        ``key``, a result is stored in the cache from here: it need not pass through the manager.
        ``audit``: the digest of its cache entry when it is a hit recomputed for the audit (else
        the job's audit map says, for executors that give the map once)."""
        ctx = self.context(slot, deps)
        kernels = self.kernels
        watch = self._watch(part) if key and self.cache is not None else None
        start = time.time()
        try:
            if watch is None:
                result, status, error = self.app.work(part, ctx), "ok", None
            else:
                with watch:
                    result, status, error = self.app.work(part, ctx), "ok", None
        except Exception:  # noqa: BLE001 - a partition's failure is data for the record, not a crash
            result, status, error = None, "failed", traceback.format_exc()
        outcome = Outcome(part.id, slot, status, self.host, worker or self.worker, start, time.time(), kernels.kind, kernels.device,
                          error, kernels.note, 0, tuple(ctx.outputs), result)
        outcome.job_id = self.job_id
        if watch is not None and watch.count:
            outcome.undeclared_reads = self._shown(watch)
        if key and self.cache is not None:
            self._store(outcome, key, audit)
        outcome.line = partition_line(outcome)
        return outcome

    def _watch(self, part: Partition) -> ReadWatch:
        """Notes what ``part``'s work() reads beyond its declared inputs (the cache's blind spot)."""
        if not part.inputs:
            # one watch per thread for the partitions that declare nothing, while none of them
            # opens a file (one per partition was a tenth of what the cache costs a no-op partition)
            watch = getattr(self._buffers, "watch", None)
            if watch is None or not watch.untouched:
                watch = self._buffers.watch = ReadWatch((), self._not_inputs)
            return watch
        from ..cache.inputs import resolve_input

        base = self.job.inputs_base or Path.cwd()
        return ReadWatch([resolve_input(path, base) for path in part.inputs], self._not_inputs)

    def _shown(self, watch: ReadWatch) -> tuple[str, ...]:
        """The undeclared reads as the record shows them: relative to the share where they are in
        it (the way inputs are declared), absolute elsewhere; a last item counts those left out."""
        base = os.path.join(os.path.realpath(self.job.inputs_base), "") if self.job.inputs_base else None
        shown = tuple(path.removeprefix(base) if base and path.startswith(base) else path for path in watch.paths)
        return shown + ((f"… and {watch.count - len(shown)} more",) if watch.count > len(shown) else ())

    def _store(self, outcome: Outcome, key: str, audit: str = "") -> None:
        """Put an ok result in the cache; a failure to store is noted, never the partition's failure."""
        outcome.cache_key, outcome.cache = key, "miss"
        if outcome.status != "ok":
            return
        if outcome.kernel != self.job.cache_kernel:
            outcome.add_note(f"not cached: it ran the {outcome.kernel} kernels, its key is for {self.job.cache_kernel}")
            return
        assert self.cache is not None
        expected = audit or self._audit.get(outcome.id)
        if expected:
            self._audit_result(outcome, key, expected)
            return
        buffer = self._buffer()
        try:
            meta = buffer.meta
            if meta.get("kernel") != outcome.kernel or meta.get("worker") != outcome.worker:
                meta = buffer.meta = {"run_id": self.job.run_id, "kernel": outcome.kernel, "worker": outcome.worker}
            if outcome.undeclared_reads:  # kept with the entry: a run that takes it from the cache says so again
                meta = {**meta, "undeclared": list(outcome.undeclared_reads)}
            location = buffer.writer.add_result(key, outcome.result, outcome.id, meta, out_dir=self.job.out_dir,
                                                outputs=outcome.outputs, replace=outcome.id in self._refresh)
        except Exception as exc:  # noqa: BLE001 - e.g. a full share, or a result that cannot be pickled
            from ..cache.write_failures import failure_note

            outcome.add_note(failure_note(exc))
            return
        outcome.cache, outcome.result_location = "stored", location
        buffer.unflushed.append(outcome)

    def _put(self, outcome: Outcome, key: str, *, replace: bool) -> bool:
        assert self.cache is not None
        try:
            path = self.cache.put(key, outcome.result, partition=outcome.id, out_dir=self.job.out_dir, outputs=outcome.outputs,
                                  replace=replace, run_id=self.job.run_id, kernel=outcome.kernel, worker=outcome.worker)
        except Exception as exc:  # noqa: BLE001 - e.g. a full share, or a result that cannot be pickled
            from ..cache.write_failures import failure_note

            outcome.add_note(failure_note(exc))
            return False
        outcome.cache, outcome.result_location = "stored", str(path)
        return True

    def _audit_result(self, outcome: Outcome, key: str, expected: str) -> None:
        """A cache hit recomputed for the audit: compare it with its entry (`cache.audit.compare`).
        The same: the entry stays (``audited``). Another result: it replaces the entry, first
        writer or not (``mismatch``). No entry left to compare with: it is stored (``stored``)."""
        from ..cache.audit import compare

        assert self.cache is not None
        try:
            check = compare(self.cache, key, outcome.result, expected)
        except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled: it could not have been cached
            outcome.add_note(f"cache audit: not compared: {type(exc).__name__}: {exc}")
            return
        outcome.digest = check.fresh
        outcome.add_note(check.note)
        if check.verdict == "match":
            outcome.cache = "audited"
        elif check.verdict == "gone":
            self._put(outcome, key, replace=False)
        elif self._put(outcome, key, replace=True):
            outcome.cache = "mismatch"
            outcome.add_note("the recomputed result was used and replaced the entry")
        else:  # the entry must not serve its result again: without the fresh one, no entry
            outcome.cache = "mismatch"
            try:
                removed = self.cache.discard(key)
            except OSError as exc:  # the share that refused the fresh entry may refuse this too
                removed = False
                outcome.add_note(f"the entry could not be removed either ({exc})")
            outcome.add_note("the recomputed result was used; the entry was removed" if removed
                             else "the recomputed result was used")

    def _buffer(self) -> _Buffer:
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None:
            assert self.cache is not None
            buffer = self._buffers.buffer = _Buffer(self.cache.writer())
        return buffer

    def flush(self) -> None:
        """Write the cache entries this thread buffered as one pack. Call it before outcomes that
        say ``stored`` leave: a reported entry is on the share. If writing fails, those outcomes
        say ``miss`` with the reason (the partitions themselves succeeded). So do those of a pack
        that filled up and failed to write earlier (`EntryWriter.take_failures`): a failure at
        flush time is never lost, and never charged to entries of a pack that was written."""
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None or not buffer.unflushed:
            return
        pending, buffer.unflushed = buffer.unflushed, []
        writer = buffer.writer
        where = writer.location
        try:
            writer.flush()
            failed = writer.take_failures()
        except Exception as exc:  # noqa: BLE001 - e.g. a full share: the results are still good
            failed = {**writer.take_failures(), where: exc}
        if not failed:
            return
        from ..cache.write_failures import failure_note

        for outcome in pending:
            exc = failed.get(outcome.result_location)
            if exc is not None:
                outcome.cache, outcome.result_location = "miss", ""
                outcome.add_note(failure_note(exc))
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
