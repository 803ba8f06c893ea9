"""The cluster bit: run a plan on a Dask cluster, each partition on its planned worker.

The executor opens the cluster (attaching to a warm one when it matches) in `start` and closes it
in `close`. Partitions go to their slot's worker (``workers=[address]``,
``allow_other_workers=True``, so a lost worker's partitions run elsewhere). Partitions that take
part in no dependency are batched, at most ``max_tasks_per_slot`` tasks per slot, so Dask's ~1 ms
per-task overhead never dominates. Partitions in a DAG are one task each, all submitted at once
with their dependencies' futures as arguments, so Dask runs each node as soon as its inputs exist
and moves the data between workers; results come back in one gather per group of finished tasks.

This module holds the executor's life cycle and its loop; the tasks themselves (submitting,
collecting) are `dask_tasks`, the workers while the run goes (joins, leaves, retirements) are
`dask_tend`, what runs where for the watchdog is `dask_inflight`, and what workers run for the
record is `dask_facts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.events import ClusterReady, Notice
from ..provenance import ClusterRecord
from .attempts import remove_started, rerun_counts, started_dir
from .base import ExecutionContext, Executor, InFlight, Outcome, settle
from .dask_elastic import ElasticBatches
from .dask_facts import require_gpus, worker_records
from .dask_inflight import in_flight_on, stop_worker_at
from .dask_tasks import DaskTasks, release
from .dask_tend import Tending
from .join_check import JoinCheck, join_check_for

if TYPE_CHECKING:
    from ..plan import GraphDriver, WorkPlan

__all__ = ["DaskExecutor"]


class DaskExecutor(Executor):
    name = "dask"

    def __init__(self, context: ExecutionContext) -> None:
        super().__init__(context)
        self._stack = contextlib.AsyncExitStack()
        self._handle: Any = None
        self._facts: dict[str, dict[str, Any]] = {}
        self._futures: dict[Any, tuple[str, list[str]]] = {}  # future -> (slot, partition ids)
        self._stopped: dict[str, str] = {}  # partition -> why its worker was stopped (a hang)
        self._slot_of_worker: dict[str, str] | None = None  # Dask worker name -> the slot it serves
        self._started: Path | None = None  # the started logs' folder, once made (`attempts`)
        self._elastic: ElasticBatches | None = None  # the queued batches as workers come and go (`dask_elastic`)
        self._join_check: JoinCheck | None = None  # who may take work: the manager's code only (`join_check`)
        self.max_tasks_per_slot = context.cluster.dask.max_tasks_per_slot
        self.retries_allowed = context.cluster.dask.retries

    async def start(self, plan: WorkPlan) -> None:
        import dask
        import distributed  # noqa: F401 - registers its config defaults before we override some

        from ..cluster import dask_config, open_cluster, spec_for

        if self._handle is not None:
            return
        project = next((p for p in (self.job.src_dir, *self.job.src_dir.parents) if (p / "pyproject.toml").is_file()), None)
        spec = spec_for(self.context.cluster, self.context.shape, self.context.app, app_distribution=self.context.app_distribution,
                        app_version=self.context.app_version, local_python=self.context.python, project_dir=project)
        self._stack.enter_context(dask.config.set(dask_config(spec)))
        self._handle = await self._stack.enter_async_context(open_cluster(spec, emit=self.context.emit))
        backend = self._handle.backend
        self.context.emit(ClusterReady(backend.address, backend.dashboard, self._handle.warm, self._handle.note))
        self._join_check = join_check_for(self.client, backend, spec, self.context, project)
        await self._join_check.at_start()  # every worker runs this manager's code (`join_check`)
        self._facts = await worker_records(self.client, spec.app_distribution or self.context.app, spec.app_version or "")
        await self._watch_workers()
        if self.context.shape.gpu == "require":
            require_gpus(self._facts)

    async def _watch_workers(self) -> None:
        """Have workers report what they run (`dask_watch`), and give a partition whose worker
        is lost (it died, or was stopped for a hang) ``[cluster] retries`` more runs, as the pool does."""
        from .dask_watch import RunningPartitions, allow_failures

        await self.client.register_plugin(RunningPartitions())
        # one attempt more than the budget: in it, the batch skips a partition its workers were
        # lost in more than `retries` times (`run_batch`), and its other partitions still run
        await self.client.run_on_scheduler(allow_failures, count=self.context.cluster.retries + 1)

    def workers(self) -> dict[str, dict[str, Any]]:
        return self._facts

    @property
    def client(self) -> Any:
        return self._handle.client

    def describe(self) -> ClusterRecord | None:
        if self._handle is None:
            return None
        backend = self._handle.backend
        elastic = self._elastic
        return ClusterRecord(scheduler=backend.address, dashboard=backend.dashboard, warm=self._handle.warm,
                             note=self._handle.note, backend=self.context.cluster.backend,
                             never_joined=elastic.absent if elastic else [], never_joined_report=elastic.absent_report if elastic else "",
                             installed=self._join_check.installed() if self._join_check else [])

    async def _addresses(self) -> dict[str, str]:
        """Slot → the address of the Dask worker that serves it (the backend names the worker),
        asked of the scheduler now."""
        identity = await self.client.scheduler.identity(n_workers=-1)
        by_name = {str(w.get("name")): address for address, w in identity["workers"].items()}
        names = self._handle.worker_names
        return {slot: by_name[name] for slot, name in names.items() if name in by_name}

    async def execute(self, plan: WorkPlan, driver: GraphDriver) -> AsyncIterator[Outcome]:
        from distributed import as_completed

        await self.start(plan)
        addresses = await self._addresses()
        self._open_started()
        # the audit's digests travel with their partitions (`_submit`), not in every task's job
        job_json = json.dumps({**asdict(self.job), "audit": {}, "job_id_env": self._handle.backend.job_id_env or ""}, default=str)
        slot_of = plan.slot_of()
        elastic = self._elastic = self._new_elastic(plan)
        await elastic.refresh(announce=False)
        if any(self._handle.worker_names.get(slot, slot) not in self._facts for slot in elastic.joined):
            await self._refresh_facts()  # a worker that joined after `start` took the workers' facts
        tasks = DaskTasks(self.client, self.context, job_json, self._futures,
                          max_tasks_per_slot=self.max_tasks_per_slot, retries=self.retries_allowed)
        pending = as_completed(tasks.submit_all(plan, driver, addresses, elastic), loop=self.client.loop)
        tending = Tending(self.client, self._handle.backend, self.context.emit, self._join_wait(), self._refresh_facts)
        watcher = asyncio.ensure_future(tending.watch(elastic, pending))
        done: set[str] = set()  # partitions whose outcome was given (a skip can overtake its task)
        try:
            while True:
                async for first in pending:
                    # Whatever else finished meanwhile comes back in the same gather: one round trip
                    # for many partitions instead of one each.
                    finished = [first, *pending.next_batch(block=False)]
                    pending.update([more for future in finished for more in elastic.finished(future)])
                    arrivals = self._where_ran(await tasks.collect(finished, self._stopped))
                    release(finished)
                    for arrived in arrivals:
                        if arrived.id in done:  # skipped here already, when its failed dependency arrived
                            continue
                        if arrived.status == "failed" and arrived.id in self._stopped:  # say why its worker was lost
                            arrived.error = f"{self._stopped[arrived.id]}; {arrived.error}"
                            arrived.line = b""
                        for outcome in settle(driver, [arrived], slot_of):
                            done.add(outcome.id)
                            yield outcome
                if not elastic.waiting():
                    await elastic.finish()
                    if elastic.joined_since_facts:  # a worker that joined after the watcher's last look
                        await self._refresh_facts()
                    break
                await tending.until_a_worker(elastic, pending)  # every worker left with batches queued
        finally:
            watcher.cancel()
            unfinished = [f for f in self._futures if not f.done()]
            if unfinished:
                await self.client.cancel(unfinished, force=True)

    def _new_elastic(self, plan: WorkPlan) -> ElasticBatches:
        backend = self._handle.backend
        check = self._join_check
        return ElasticBatches(self.client, self._handle.worker_names, emit=self.context.emit,
                              join_wait=self._join_wait(), report=check.report(backend) if check else backend.missing_workers_report,
                              admit=check.admit if check else None,
                              capacity={s.name: s.capacity for s in plan.slots},
                              capabilities={s.name: tuple(s.capabilities) for s in plan.slots})

    def _join_wait(self) -> float:
        """Seconds the run waits for missing workers (``[cluster] join_timeout``, else ``start_timeout``)."""
        cluster = self.context.cluster
        return cluster.join_timeout if cluster.join_timeout is not None else cluster.dask.start_timeout

    async def _refresh_facts(self) -> None:
        """The versions and capabilities of workers that joined late, for the record."""
        try:
            self._facts.update(await worker_records(self.client, self.context.app_distribution or self.context.app,
                                                    self.context.app_version or ""))
        except Exception:  # noqa: BLE001 - a worker that left meanwhile: the record keeps what it had
            pass

    async def in_flight(self) -> list[InFlight]:
        """What each worker runs, as the scheduler last heard it (`dask_inflight.in_flight_on`)."""
        if self._handle is None:
            return []
        return await in_flight_on(self.client, self._handle.worker_names, self._futures, self.job.out_dir)

    async def stop_worker(self, item: InFlight, reason: str) -> None:
        """Stop the worker that runs ``item`` (`dask_inflight.stop_worker_at`); its partition's error says ``reason``."""
        self._stopped[item.id] = reason
        await stop_worker_at(self.client, item.worker)

    async def retries(self) -> dict[str, int]:
        """How often each partition started again after its worker was lost: counted from the
        started logs its tasks' attempts kept (`attempts`), so a partition of a lost worker's
        batch that had not started there counts 0."""
        return rerun_counts(started_dir(self.job.out_dir), {ids[0]: ids for _, ids in self._futures.values() if ids})

    def _open_started(self) -> None:
        """Make the folder of the tasks' started logs (workers log nothing without it)."""
        folder = started_dir(self.job.out_dir)
        try:
            folder.mkdir(exist_ok=True)
            self._started = folder
        except OSError as exc:
            cause = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            self.context.emit(Notice(f"re-runs after a lost worker cannot be counted: cannot create {folder}: {cause} "
                                     f"({exc.strerror}); check that the share is writable", level="warning"))

    def _where_ran(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Note on each outcome that another slot's worker ran (Dask moved its task off a lost
        worker) which slot that was: the record credits the slot that did the work."""
        names = self._handle.worker_names if self._handle is not None else {}
        slots = self._slot_of_worker
        if slots is None:
            slots = self._slot_of_worker = {name: slot for slot, name in names.items()}
        for outcome in outcomes:
            if outcome.worker and names.get(outcome.slot) != outcome.worker:
                outcome.ran_slot = slots.get(outcome.worker, outcome.worker)
                outcome.line = b""  # made again by the manager, with ran_slot
        return outcomes

    async def close(self) -> None:
        check, self._join_check = self._join_check, None
        if check is not None:
            await check.close()
        started, self._started = self._started, None
        if started is not None:
            remove_started(started)
        self._futures.clear()
        self._handle = None
        await self._stack.aclose()

    def kill(self) -> None:
        self._futures.clear()  # the cluster itself is closed by `close`, which the runner always awaits

