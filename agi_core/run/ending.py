"""How a run ends once its executor is done: the app's reduce on the manager, the warnings the
run gives, what was running when it was stopped, and its final record (or why it could not be written).

Separate from `runner`, which starts the run and takes each outcome as it arrives: this is the
part after the executor is done. `RunEnding` is a base of `Runner` whose methods read the run's
state (annotated below, set by `Runner.__init__`); it keeps no state of its own.
"""

from __future__ import annotations

import logging
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..app import WorkContext
from ..base.errors import ShareError
from ..base.events import EventSink, Notice, RunFinished
from ..base.share_io import share_error
from ..executors import InFlight, JobSpec, Outcome
from ..kernels.selection import select_kernels
from ..kernels.shape import ExecutionShape
from ..provenance import ClusterRecord, RecordWriter, RunRecord, WorkerRecord, iso
from ..provenance.reruns import reruns_warning
from .app_errors import reduce_failure
from .interruption import unfinished_line
from .recording import local_capabilities, local_versions, totals, worker_records
from .run_checks import failure_message, kernel_notes, stray_outputs, undeclared_reads
from .step import announce

if TYPE_CHECKING:
    from pathlib import Path

    from ..app.env import AgiEnv
    from ..cache.write_failures import CacheWrites
    from ..plan import WorkPlan
    from .caching import RunCache
    from .request import RunRequest
    from .watchdog import Watchdog

__all__ = ["RunEnding"]


class RunEnding:
    """The end of one run: its checks, warnings and final record (a base of `Runner`)."""

    # the run's state, owned and set by `Runner.__init__` (annotations only: no class attributes)
    env: AgiEnv
    request: RunRequest
    plan: WorkPlan
    emit: EventSink
    run_id: str
    run_dir: Path
    outcomes: dict[str, Outcome]
    started: float
    error: str | None
    writer: RecordWriter
    record: RunRecord | None
    cache: RunCache | None
    _worker_facts: dict[str, dict[str, Any]]
    _where: ClusterRecord | None
    _fix: str | None
    _writes: CacheWrites | None
    _app_error: tuple[str, BaseException] | None
    _running_at_stop: list[InFlight]

    def _reduce(self, job: JobSpec, results: dict[str, Any]) -> Any:
        app = self.env.app_class()
        # reduce runs here, on the manager, which need not have compiled or GPU kernels
        kernels = select_kernels(job.module_name.split(".")[0], ExecutionShape())
        ctx = WorkContext(args=self.env.app_class.Args.model_validate(self.request.args), kernels=kernels.module,
                          kernel_kind=kernels.kind, device=kernels.device, out_dir=job.out_dir,
                          log=logging.getLogger(f"agi.app.{job.module_name}"), slot="manager")
        try:
            # read-only: the same dict (1,000,000 entries at scale) is the run result's `results`
            return app.reduce(MappingProxyType(results), ctx)
        except Exception as exc:  # noqa: BLE001 - recorded and raised as the run's failure
            message, self._fix, self.error = reduce_failure(self.env.name, exc, self.run_id, self.cache is not None)
            self._app_error = (message, exc)
            return None

    def _keep_unfinished(self) -> None:
        """Record the partitions that were running when the run was stopped: started, never ended."""
        unfinished = [item for item in self._running_at_stop if item.id not in self.outcomes]
        if unfinished:
            slots = self.plan.slot_of()
            for item in unfinished:
                self.writer.add(item.id, unfinished_line(item, slots))

    def _hung(self, watchdog: Watchdog) -> None:
        """One warning in the record for the partitions whose worker was stopped for a hang."""
        if watchdog.stopped:
            assert self.record is not None
            count = len(watchdog.stopped)
            self.record.warnings.append(f"{count} partition{'s' if count > 1 else ''} hung and had {'their' if count > 1 else 'its'} "
                                        f"worker stopped: {watchdog.stopped[0]}" + (" …" if count > 1 else ""))

    def _check_outputs(self) -> None:
        """Files partitions left in out/ without declaring them: said in the record (`run_checks.stray_outputs`)."""
        if self.cache is not None:
            self._warn(stray_outputs(self.run_dir / "out", self.outcomes.values()))

    def _check_reads(self) -> None:
        """One warning per run naming the files partitions read without declaring them."""
        self._warn(undeclared_reads(self.outcomes.values(), self.run_id))

    def _warn(self, warning: str | None) -> None:
        """A warning for the record and for the listeners (None: nothing to say)."""
        if warning is not None:
            assert self.record is not None
            self.record.warnings.append(warning)
            self.emit(Notice(warning, level="warning"))

    def _cache_writes(self) -> CacheWrites | None:
        """The results the workers could not store (counted once, from the outcomes' notes); None without the cache."""
        if self._writes is None and self.cache is not None:
            from ..cache.write_failures import tally

            self._writes = tally(self.outcomes.values())
        return self._writes

    def _require_cache_writes(self) -> None:
        """With ``--require-cache``, a result that could not be stored is the run's error."""
        writes = self._cache_writes()
        if writes and self.request.cache.require and self.cache is not None and not self.error:
            self.error = writes.error(self.cache.store.root)
            self._fix = f"{writes.fix()}, then run it again (agi run {self.env.name} --resume {self.run_id})"

    def _check_reruns(self) -> None:
        """Partitions whose work() ran again after a lost worker: counted in the record, and one warning."""
        ids = [o.id for o in self.outcomes.values() if o.retries]
        if ids:
            assert self.record is not None
            self.record.reruns = len(ids)
            self._warn(reruns_warning(ids, self.run_id))

    def _finish(self, status: str, error: str | None) -> None:
        assert self.record is not None
        warning = self.cache.audit_warning() if self.cache is not None else None
        if warning is not None:
            self.record.warnings.append(warning)
            self.emit(Notice(warning, level="warning"))
        writes = self._cache_writes()
        if writes and self._fix is None:  # said once: as the run's error with --require-cache, else as a warning
            self.record.warnings.append(writes.warning())
            self.emit(Notice(writes.warning(), level="warning"))
        ended = time.time()
        local = None
        if self.request.executor != "dask":
            local = WorkerRecord(versions=local_versions(self.env.distribution, self.env.version()),
                                 capabilities=local_capabilities(self.request.shape.gpu != "off"))
        facts = {name: WorkerRecord.model_validate(data) for name, data in self._worker_facts.items()}
        notes = self.record.kernel_note or kernel_notes(self.outcomes.values())
        self.record = self.record.model_copy(update={
            "kernel_note": notes,
            "audit": self.cache.audit if self.cache is not None else None,
            "status": status, "error": error, "ended": iso(ended), "duration_s": round(ended - self.started, 6),
            "cluster": self._where or self.record.cluster,
            "workers": worker_records(self.outcomes.values(), facts, local),
            "totals": totals(self.plan, self.outcomes.values()),
        })
        try:
            self.writer.finish(self.record, (p.id for p in self.plan.partitions), self.plan.slot_of)
        except OSError as exc:
            raise self._record_lost(exc, status, error) from exc
        announce(self.request.step, self.record, self.writer.manifest)
        self.emit(RunFinished(self.run_id, status, round(ended - self.started, 6), self.record.totals.model_dump()))

    def _record_lost(self, exc: OSError, status: str, error: str | None) -> ShareError:
        """The final record could not be written: say why in the reserved failure file, which
        readers take as the run's end (not ``abandoned``), and return the error to raise."""
        lost = share_error(exc, "writing the run record")
        ended = f"the run itself ended {status}" + (f" ({error.strip().splitlines()[-1]})" if error and error.strip() else "")
        said = self.writer.record_failure(f"{lost.message}; {ended}; the partitions logged before are kept")
        record = (f"`agi runs show {self.run_id}` says it failed and why" if said else
                  "the record could not say so either: it will read abandoned")
        return ShareError(f"{lost.message}; {ended}", fix=f"{lost.fix}; {record}")

    def _failure_message(self) -> str:
        return failure_message(self.outcomes.values()) or (self._app_error[0] if self._app_error else self.error or "the run failed")
