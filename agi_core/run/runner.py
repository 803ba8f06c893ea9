"""`Runner`: the life of one run, from a request and a plan to a result and a record.

checks (kernels, the app's environment) → run folder and first record → cache look-up (and the
hits chosen for an audit) → executor (by registry name) driven by the graph driver → outcomes
streamed into the record and to listeners → reduce → final record. Ctrl-C, SIGTERM and errors stop the executor
at once and still write the record.
A share that cannot be written (full, read-only) is a `ShareError` naming the path and the errno: before
the first record, no run folder is left; at the end, the reserved failure file says why (`provenance.writer`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..app import WorkContext
from ..errors import RunError, ShareError, Terminated
from ..events import EventSink, Notice, PartitionDone, Phase, RunFinished, RunStarted, wants_partitions
from ..execution_shape import ExecutionShape
from ..executors import ExecutionContext, Executor, InFlight, JobSpec, Outcome, create_executor
from ..kernels import select_kernels
from ..modes import Mode
from ..plan import GraphDriver, HasResult
from ..provenance import ClusterRecord, RecordWriter, RunRecord, RunStore, WorkerRecord, iso, new_run_id
from ..provenance.lines import partition_line
from ..provenance.reruns import reruns_warning
from ..share_access import ShareAccess
from ..share_io import is_file_error, share_error
from .app_errors import reduce_failure
from .interruption import running_at_stop, unfinished_line
from .preflight import prepare
from .recording import first_record, local_capabilities, local_versions, totals, worker_records
from .result import ResultsView, RunResult
from .run_checks import failure_message, failure_text, kernel_notes, stray_outputs, undeclared_reads
from .step import announce
from .termination import TERMINATED_MESSAGE, SigtermCancels
from .watchdog import Watchdog

if TYPE_CHECKING:
    from ..cache.write_failures import CacheWrites
    from ..env import AgiEnv
    from ..plan import WorkPlan
    from .caching import RunCache
    from .request import RunRequest

__all__ = ["Runner"]


class Runner:
    """Runs one request's plan once. ``emit`` receives the run's events; ``on_outcome`` each
    partition's `Outcome` (with its result) as soon as it arrives."""

    def __init__(self, env: AgiEnv, request: RunRequest, plan: WorkPlan, *, emit: EventSink,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.env, self.request, self.plan = env, request, plan
        self.emit = emit
        self._partition_events = wants_partitions(emit)
        self.on_outcome = on_outcome
        self.run_id = new_run_id()
        self.run_dir = RunStore(request.share).run_dir(env.name, self.run_id)
        self.outcomes: dict[str, Outcome] = {}
        self.started = time.time()
        self.error: str | None = None
        self.writer = RecordWriter(self.run_dir)
        self.record: RunRecord | None = None
        self._worker_facts: dict[str, dict[str, Any]] = {}  # from the executor: versions, capabilities
        self._where: ClusterRecord | None = None  # from the executor: e.g. the Dask scheduler
        self._not_ok = 0  # partitions that failed or were skipped
        self.cache: RunCache | None = None
        self._python: Any = None  # the interpreter of local worker processes (preflight), None: this one
        self._fix: str | None = None  # the fix of the run's own error (else: see the record)
        self._writes: CacheWrites | None = None  # results the workers could not store, once counted
        self._sigterm = SigtermCancels()
        self._app_error: tuple[str, BaseException] | None = None  # reduce() raised: the short message, the exception
        self._running_at_stop: list[InFlight] = []  # what the workers ran when the run was stopped

    async def run(self) -> RunResult:
        """Run the plan; raise `RunError` (with the partial result) when any partition failed,
        `ShareError` when the share could not be written, `Terminated` after a SIGTERM."""
        with self._sigterm:
            try:
                return await self._run()
            except asyncio.CancelledError:
                if self._sigterm.received:
                    raise Terminated(TERMINATED_MESSAGE) from None
                raise
            except OSError as exc:  # before the first record was written (after it, `_run` says it)
                self._forget_run_dir()
                if not is_file_error(exc):
                    raise
                raise share_error(exc, "starting the run at") from exc

    def _forget_run_dir(self) -> None:
        """A run that failed before its first record leaves no folder `agi runs list` cannot show."""
        if self.run_dir.is_dir() and not self.writer.manifest.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    async def _run(self) -> RunResult:
        ready = prepare(self.env, self.request, self.emit)
        self._python = ready.python
        if self.request.use_cache:  # a bad `reads`, --refresh id or input fails here, before the run folder exists
            from .caching import RunCache  # imported when used: a --no-cache run starts without the cache package

            self.cache = RunCache.open(self.env, self.request, self.plan, kernel=ready.kernel_kind)
        elif any(p.inputs for p in self.plan.partitions):
            from ..cache.inputs import check_inputs

            check_inputs(((p.id, p.inputs) for p in self.plan.partitions if p.inputs), self.request.share)
        self.run_dir.mkdir(parents=True)
        (self.run_dir / "out").mkdir()
        self.plan.save(self.run_dir / "plan.json")
        self.record = first_record(self.env, self.request, self.plan, self.run_id, self.started)
        self.record.kernel_note = ready.kernel_note or None
        self.record.out_dir = str(self.run_dir / "out")
        self.record.resumed_from = self.request.resume
        self.record.step = self.request.step
        if self.cache is not None:
            self.cache.write_keys(self.run_dir)
            self.record.cache = str(self.cache.store.root)
            self.record.refreshed = list(self.request.refresh)
        self.writer.write(self.record)
        announce(self.request.step, self.record, self.writer.manifest)
        value = None
        try:
            known, audit = self._look_up()
            job = self._job(audit)
            executor = create_executor(self.request.executor, self._context(job))
            await self._execute(executor, known)
            self._check_outputs()
            self._check_reads()
            self._require_cache_writes()
            self._check_reruns()
            results = ResultsView(self.outcomes)
            if not self._not_ok:
                self.emit(Phase("reducing"))
                value = self._reduce(job, results)
            status = "failed" if self.error or self._not_ok else "ok"
        except (KeyboardInterrupt, asyncio.CancelledError):
            self._keep_unfinished()
            self._finish("interrupted", TERMINATED_MESSAGE if self._sigterm.received else "interrupted by the user (Ctrl-C)")
            raise
        except BaseException as exc:
            self._finish("failed", failure_text(exc))
            if is_file_error(exc):
                raise share_error(exc, "during the run, at") from exc
            raise
        self._finish(status, self.error)
        result = RunResult(run_id=self.run_id, app=self.env.name, mode=Mode(self.request.mode), status=status, value=value,
                           results=results,
                           outcomes=list(self.outcomes.values()), run_dir=self.run_dir, plan=self.plan,
                           duration_s=time.time() - self.started)
        if status != "ok":
            cause = self._app_error[1] if self._app_error else None  # `-v` shows the app's traceback
            raise RunError(self._failure_message(), fix=self._fix or f"see the record: agi runs show {self.run_id}",
                           result=result) from cause
        return result

    def _look_up(self) -> tuple[dict[str, HasResult], dict[str, str]]:
        """The results found in the cache (outputs restored), and the hits chosen for the audit
        (partition -> the digest its worker compares with), which are computed again."""
        if self.cache is None:
            return {}, {}
        self.emit(Phase("cache", f"looking up {len(self.plan.partitions)} partitions in {self.cache.store.root}"))
        known = self.cache.load(self.plan, self.run_dir / "out", self.emit)
        if self.cache.warnings:  # e.g. untrusted entries: said once, and kept in the record
            assert self.record is not None
            self.record.warnings.extend(self.cache.warnings)
        fraction = self.request.cache.audit
        if not fraction:
            return known, {}
        from ..cache.audit import new_seed

        audit = self.cache.pick_audits(known, fraction, new_seed())
        assert self.record is not None and self.cache.audit is not None
        self.record.audit = self.cache.audit
        self.writer.write(self.record)
        if audit:
            self.emit(Notice(f"cache audit: recomputing {len(audit)} of {self.cache.audit.hits} cache hits "
                             f"(--audit {fraction:g}, seed {self.cache.audit.seed}) to compare them with their entries"))
        return known, audit

    def _job(self, audit: dict[str, str]) -> JobSpec:
        cache = self.cache
        return JobSpec(self.env.src_dir, self.env.module_name, self.env.class_name, self.request.args, self.request.mode,
                       self.run_dir / "out", run_id=self.run_id, cache_dir=cache.store.root if cache else None,
                       cache_kernel=cache.keys.kernel if cache else "", refresh=self.request.refresh, audit=audit,
                       retries=self.request.cluster.retries,
                       inputs_base=self.request.share, cache_key_id=cache.store.key.id if cache else "",
                       share_umask=ShareAccess.of(self.request.cluster.share.group_access).umask,
                       kernels=self.request.shape.kernels, kernel_threads=self.request.shape.kernel_threads)

    def _context(self, job: JobSpec) -> ExecutionContext:
        return ExecutionContext(self.run_id, self.env.name, job, self.request.cluster, self.emit, self._python,
                                app_distribution=self.env.distribution, app_version=self.env.version(),
                                keys=self.cache.keys.keys if self.cache else {}, shape=self.request.shape)

    async def _execute(self, executor: Executor, known: dict[str, HasResult]) -> None:
        todo = _without(self.plan, known)
        # an unchanged re-run finds every result in the cache: no graph to drive (0.1 s per 100,000 partitions)
        driver = GraphDriver(self.plan.partitions, known=known) if todo.partitions else None
        # The plan's objects live as long as the run: keep the garbage collector from scanning
        # them again and again (measured: seconds of a 100,000-partition run on a busy machine).
        gc.freeze()
        try:
            if todo.partitions:  # nothing to start when every result is in the cache
                self.emit(Phase("starting", executor.name))
                await executor.start(todo)
                self._refresh(executor)
            # Only now may threads start (the heartbeat; a listener's progress display): pool
            # slots fork in `start`, and a fork must not copy a lock another thread holds.
            self.writer.start_heartbeat()
            self.emit(RunStarted(self.run_id, self.env.name, self.request.mode, len(self.plan.partitions),
                                 {slot: len(ids) for slot, ids in self.plan.assignment.items() if ids}, str(self.run_dir)))
            assert self.cache is not None or not known
            if known:
                hits = self.cache.hits  # type: ignore[union-attr]
                order = [pid for pid, _ in driver.take_known()] if driver is not None else [p.id for p in self.plan.partitions]
                self._take_hits([hits[pid] for pid in order])
            if driver is not None:
                self.emit(Phase("running", f"{executor.name}: {len(todo.partitions)} partitions to compute"
                                + (f", {len(known)} from the cache" if known else "")))
                watchdog = Watchdog(executor, self.request.cluster.partition_timeout, lambda pid: driver.partition(pid).weight,
                                    self.emit, self.run_dir)
                watching = asyncio.create_task(watchdog.run(), name="agi-watchdog")
                try:
                    async for outcome in executor.execute(todo, driver):
                        # the plan's own id string, not the copy that came through a pipe: 55 MB at 1,000,000
                        outcome.id = driver.partition(outcome.id).id
                        watchdog.finished(outcome)
                        self._take(outcome)
                finally:
                    watching.cancel()
                    await asyncio.wait([watching])
                self._hung(watchdog)
            for pid, count in (await executor.retries()).items():
                if pid in self.outcomes:
                    self.outcomes[pid].retries = count
                    self.outcomes[pid].line = b""
                    self.writer.add(pid, partition_line(self.outcomes[pid]))  # the record keeps the latest line
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):  # what ran is drawn in the report
                self._running_at_stop = await running_at_stop(executor)
            executor.kill()
            raise
        finally:
            gc.unfreeze()
            self._worker_facts, self._where = executor.workers(), executor.describe()
            await executor.close()

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

    def _refresh(self, executor: Executor) -> None:
        """Rewrite the manifest once the executor knows where the run runs (e.g. the scheduler)."""
        assert self.record is not None
        self.record.cluster = executor.describe()
        self.writer.write(self.record)

    def _take(self, outcome: Outcome) -> None:
        cache = self.cache
        if cache is not None:
            if cache.corrupt or cache.unloadable or cache.untrusted:
                cache.mark(outcome)
            if cache.audits:
                notice = cache.audited(outcome)
                if notice is not None:
                    self.emit(notice)
            # the key arrived as a copy from the worker: keep the run's own string (100 MB at 1,000,000 partitions)
            outcome.cache_key = cache.keys.keys.get(outcome.id, outcome.cache_key) if outcome.cache_key else outcome.cache_key
        self.outcomes[outcome.id] = outcome
        self._not_ok += outcome.status not in ("ok", "cached")
        self.writer.add(outcome.id, outcome.line or partition_line(outcome))
        outcome.line = b""  # the record's log has it now: 1,000,000 lines are 300 MB the manager need not keep
        if self._partition_events:  # 100,000 events nobody reads cost a third of a second
            self.emit(PartitionDone.of(outcome))
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _take_hits(self, hits: list[Outcome]) -> None:
        """What `_take` does for each cache hit, in bulk: a re-run of 100,000 partitions starts
        with 100,000 of them. (A hit is never corrupt, untrusted or audited: those were taken out
        of the hits, and its key is the run's own string.)"""
        self.writer.add_many([(o.id, o.line or partition_line(o)) for o in hits])
        outcomes = self.outcomes
        for outcome in hits:
            outcome.line = b""  # the record's log has it now
            outcomes[outcome.id] = outcome
        if self._partition_events or self.on_outcome is not None:
            for outcome in hits:
                if self._partition_events:
                    self.emit(PartitionDone.of(outcome))
                if self.on_outcome is not None:
                    self.on_outcome(outcome)

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


def _without(plan: WorkPlan, done: Mapping[str, object]) -> WorkPlan:
    """The part of ``plan`` still to run: its partitions not in ``done`` (those found in the
    cache), on the same slots. Dependencies on done partitions stay: the driver has their results."""
    if not done:
        return plan
    from ..plan import WorkPlan

    return WorkPlan(plan.app, plan.args, plan.slots, [p for p in plan.partitions if p.id not in done],
                    {slot: [pid for pid in ids if pid not in done] for slot, ids in plan.assignment.items()}, plan.fingerprint)
