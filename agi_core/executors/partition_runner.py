"""`PartitionRunner`: load an app once per process, then run its partitions one at a time.

Every executor runs partitions through it: in this process (`sequential`), in a pool slot
(`slot_process`), in a Dask task (`worker.run_batch`), and `agi cache verify`. Separate from
`worker` (the Dask task around it) and from `worker_cache` (storing results): this is what one
partition's run is: its context, its work(), the files it read undeclared, its record line.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..app import App, Partition, WorkContext
from ..app.env import load_app_class
from ..kernels.selection import KernelChoice, select_kernels
from ..kernels.shape import ExecutionShape
from ..provenance.lines import partition_line
from .base import JobSpec, Outcome
from .file_reads import ReadWatch, ignored_folders

if TYPE_CHECKING:
    from ..cache import CacheStore
    from .worker_cache import WorkerCache

__all__ = ["PartitionRunner"]


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
        self.writes: WorkerCache | None = None  # what stores the results (`worker_cache`), with the cache
        if job.cache_dir is not None:  # imported when used: a run without the cache starts without the package
            from ..cache import CacheStore
            from ..cache.auth import worker_key
            from .worker_cache import WorkerCache

            self.cache = CacheStore(job.cache_dir, key=worker_key(job.cache_key_id))
            self.writes = WorkerCache(job, self.cache)
        # a Dask worker's threads run batches at once: each has its own idle `ReadWatch`
        self._watches = threading.local()
        # what undeclared reads never count: the app's code, the run's outputs, the cache itself
        self._not_inputs = ignored_folders(p for p in (job.src_dir, job.out_dir, job.cache_dir) if p is not None)

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
        writes = self.writes
        if key and writes is not None:
            writes.store(outcome, key, audit)
        outcome.line = partition_line(outcome)
        return outcome

    def _watch(self, part: Partition) -> ReadWatch:
        """Notes what ``part``'s work() reads beyond its declared inputs (the cache's blind spot)."""
        if not part.inputs:
            # one watch per thread for the partitions that declare nothing, while none of them
            # opens a file (one per partition was a tenth of what the cache costs a no-op partition)
            watch = getattr(self._watches, "watch", None)
            if watch is None or not watch.untouched:
                watch = self._watches.watch = ReadWatch((), self._not_inputs)
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

    def flush(self) -> None:
        """Write the cache entries this thread buffered as one pack, before outcomes that say
        ``stored`` leave (`WorkerCache.flush`); nothing without the cache."""
        if self.writes is not None:
            self.writes.flush()
