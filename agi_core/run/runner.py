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
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..base.collection_pause import freeze_at_exit, thaw
from ..base.errors import RunError, Terminated
from ..base.events import EventSink, PartitionDone, Phase, RunStarted, wants_partitions
from ..base.modes import Mode
from ..base.share_io import is_file_error, share_error
from ..executors import Executor, InFlight, Outcome, create_executor
from ..plan import GraphDriver, HasResult
from ..provenance import ClusterRecord, RecordWriter, RunRecord, RunStore, new_run_id
from ..provenance.lines import partition_line
from .cache_lookup import look_up, open_cache
from .ending import RunEnding
from .interruption import running_at_stop
from .job import execution_context, job_spec, remaining
from .plan_memo import save_plan
from .preflight import prepare
from .recording import first_record
from .result import ResultsView, RunResult
from .run_checks import failure_text
from .step import announce
from .termination import TERMINATED_MESSAGE, SigtermCancels
from .watchdog import Watchdog

if TYPE_CHECKING:
    from ..app.env import AgiEnv
    from ..cache.write_failures import CacheWrites
    from ..plan import WorkPlan
    from .caching import RunCache
    from .request import RunRequest

__all__ = ["Runner"]


class Runner(RunEnding):
    """Runs one request's plan once. ``emit`` receives the run's events; ``on_outcome`` each
    partition's `Outcome` (with its result) as soon as it arrives. How it ends (reduce, checks, warnings,
    the final record) is `RunEnding`'s."""

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
            finally:
                thaw()  # what the run froze (`making_long_lived`): the plan, the cache's hits
                freeze_at_exit()  # a script that keeps the result exits without walking it once more

    def _forget_run_dir(self) -> None:
        """A run that failed before its first record leaves no folder `agi runs list` cannot show."""
        if self.run_dir.is_dir() and not self.writer.manifest.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    async def _run(self) -> RunResult:
        ready = prepare(self.env, self.request, self.emit)
        self._python = ready.python
        self.cache = open_cache(self.env, self.request, self.plan, ready.kernel_kind)  # before the run folder exists
        self.run_dir.mkdir(parents=True)
        (self.run_dir / "out").mkdir()
        save_plan(self.plan, self.run_dir / "plan.json", self.cache.store.root if self.cache is not None else None)
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
            known, audit = ({}, {}) if self.cache is None else look_up(
                self.cache, self.plan, self.run_dir, self.request.cache.audit, self.record, self.writer, self.emit)
            job = job_spec(self.env, self.request, self.run_dir, self.run_id, self.cache, audit)
            executor = create_executor(self.request.executor,
                                       execution_context(self.env, self.request, self.run_id, job, self.emit, self._python, self.cache))
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

    async def _execute(self, executor: Executor, known: dict[str, HasResult]) -> None:
        todo = remaining(self.plan, known)
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
