"""A worker's side of the cache: each ok result stored from where it ran, buffered per thread and
written as one pack per batch, and audited cache hits compared with their entries.

Separate from `partition_runner` because it is the cache's business, not running a partition: a
run without the cache never makes a `WorkerCache` (nor imports the cache package). It runs on
workers, so it is in the workers' code hash (`install.code_hash`, through `partition_runner`).
"""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..provenance.lines import partition_line
from .base import JobSpec, Outcome

if TYPE_CHECKING:
    from ..cache import CacheStore, EntryWriter

__all__ = ["WorkerCache"]


class WorkerCache:
    """Stores the results of one job's partitions in ``cache`` (the job's store, tagged with the
    manager's key). A Dask worker's threads run batches at once: each buffers its own entries."""

    def __init__(self, job: JobSpec, cache: CacheStore) -> None:
        self.job = job
        self.cache = cache
        self._buffers = threading.local()
        self._refresh = frozenset(job.refresh)
        self._audit = job.audit

    def store(self, outcome: Outcome, key: str, audit: str = "") -> None:
        """Put an ok result in the cache; a failure to store is noted, never the partition's failure.
        ``audit``: the digest its entry had, when it is a cache hit recomputed for the audit."""
        outcome.cache_key, outcome.cache = key, "miss"
        if outcome.status != "ok":
            return
        if outcome.kernel != self.job.cache_kernel:
            outcome.add_note(f"not cached: it ran the {outcome.kernel} kernels, its key is for {self.job.cache_kernel}")
            return
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
            body = pickle.dumps(outcome.result, protocol=pickle.HIGHEST_PROTOCOL)
            location = buffer.writer.add_pickled(key, body, outcome.id, meta, out_dir=self.job.out_dir,
                                                 outputs=outcome.outputs, replace=outcome.id in self._refresh)
        except Exception as exc:  # noqa: BLE001 - e.g. a full share, or a result that cannot be pickled
            from ..cache.write_failures import failure_note

            outcome.add_note(failure_note(exc))
            return
        outcome.cache, outcome.result_location = "stored", location
        outcome.result_pickle = body  # the outcome goes back with the same pickle (`wire.pack_outcomes`), not a second one
        buffer.unflushed.append(outcome)

    def _put(self, outcome: Outcome, key: str, *, replace: bool) -> bool:
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
