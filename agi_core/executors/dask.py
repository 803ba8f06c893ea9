"""The cluster bit: run a plan on a Dask cluster, each partition on its planned worker.

The executor opens the cluster (attaching to a warm one when it matches) in `start` and closes it
in `close`. Partitions go to their slot's worker (``workers=[address]``,
``allow_other_workers=True``, so a lost worker's partitions run elsewhere). Partitions that take
part in no dependency are batched, at most ``max_tasks_per_slot`` tasks per slot, so Dask's ~1 ms
per-task overhead never dominates. Partitions in a DAG are one task each, all submitted at once
with their dependencies' futures as arguments, so Dask runs each node as soon as its inputs exist
and moves the data between workers; results come back in one gather per group of finished tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AgiError
from ..events import ClusterReady, Notice
from ..gpus import gpu_libraries_unusable
from ..provenance import ClusterRecord
from .attempts import last_started, remove_started, rerun_counts, started_dir
from .base import ExecutionContext, Executor, InFlight, Outcome, settle
from .dask_elastic import ElasticBatches
from .elastic import Batch
from .join_check import JoinCheck, join_check_for
from .wire import pack_outcomes, unpack_outcomes
from .worker import pack, run_batch

if TYPE_CHECKING:
    from ..plan import GraphDriver, WorkPlan

__all__ = ["DaskExecutor"]

#: a worker silent this long (no heartbeat) may have stopped before saying what it runs
_SILENT_S = 5.0
#: how often a run asks the scheduler which workers it has (joins and leaves)
_WATCH_S = 0.5


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
        self._retirements: Any = None  # workers drained before they retire (`dask_retire`), when the backend's do
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
        self._facts = await self._worker_records(spec.app_distribution or self.context.app, spec.app_version or "")
        await self._watch_workers()
        if self.context.shape.gpu == "require":
            self._require_gpus()

    async def _watch_workers(self) -> None:
        """Have workers report what they run (`dask_watch`), and give a partition whose worker
        is lost (it died, or was stopped for a hang) ``[cluster] retries`` more runs, as the pool does."""
        from .dask_watch import RunningPartitions, allow_failures

        await self.client.register_plugin(RunningPartitions())
        # one attempt more than the budget: in it, the batch skips a partition its workers were
        # lost in more than `retries` times (`run_batch`), and its other partitions still run
        await self.client.run_on_scheduler(allow_failures, count=self.context.cluster.retries + 1)

    def _require_gpus(self) -> None:
        """``rapids = "require"``: every worker must see a GPU (or numba's simulator), checked on the
        workers themselves before anything is submitted; the error names the hosts."""
        without = sorted({facts["host"] for facts in self._facts.values()
                          if not (facts["capabilities"].get("gpu_models") or facts["capabilities"].get("gpu_simulated"))})
        if without:
            raise AgiError(f'rapids = "require", but workers see no GPU: no GPU on {", ".join(without)}',
                           fix="check those hosts with `agi doctor APP` (nvidia-smi, the driver, CUDA_VISIBLE_DEVICES), "
                               "remove them from the worker map, or set rapids = true to run the CPU kernels there")
        unusable = gpu_libraries_unusable(self._facts)  # a GPU that neither numba.cuda nor cuDF can use
        if unusable:
            raise AgiError(f'rapids = "require", but the GPU libraries cannot use the GPU of {unusable}',
                           fix="check those hosts with `agi doctor APP` (gpu libraries: the driver, the app's gpu extra), "
                               "or set rapids = true to run the CPU kernels there")

    async def _worker_records(self, distribution: str, source_version: str) -> dict[str, dict[str, Any]]:
        """Each Dask worker's versions and capabilities, for the run record."""
        from ..cluster import worker_facts

        records = {}
        for name, facts in (await worker_facts(self.client, distribution)).items():
            versions = {"python": facts.python, "agi-orchestrator": facts.agi_core, "dask": facts.dask,
                        "distributed": facts.distributed, distribution: facts.app or source_version}
            records[name] = {"host": facts.host, "versions": {k: v for k, v in versions.items() if v},
                             "capabilities": {"cores": facts.cores, "nthreads": facts.nthreads,
                                              "memory_limit": facts.memory_limit, "gpus": facts.gpus, **(facts.gpu or {})}}
        return records

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
        pending = as_completed(self._submit_all(job_json, plan, driver, addresses), loop=self.client.loop)
        watcher = asyncio.ensure_future(self._watch(elastic, pending))
        done: set[str] = set()  # partitions whose outcome was given (a skip can overtake its task)
        try:
            while True:
                async for first in pending:
                    # Whatever else finished meanwhile comes back in the same gather: one round trip
                    # for many partitions instead of one each.
                    finished = [first, *pending.next_batch(block=False)]
                    pending.update([more for future in finished for more in elastic.finished(future)])
                    arrivals = self._where_ran(await self._collect(finished))
                    self._release(finished)
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
                await self._until_a_worker(elastic, pending)  # every worker left with batches queued
        finally:
            watcher.cancel()
            unfinished = [f for f in self._futures if not f.done()]
            if unfinished:
                await self.client.cancel(unfinished, force=True)

    def _submit_all(self, job_json: str, plan: WorkPlan, driver: GraphDriver, addresses: dict[str, str]) -> list[Any]:
        """Submit every partition at once, as plain Dask would: independent ones in batches per
        slot, DAG nodes one task each with their dependencies' futures as arguments (Dask runs
        a node when its inputs exist, on the workers, without asking the manager). A node whose
        dependency failed is skipped by its worker (`run_batch`), and by the driver here."""
        from ..plan import topological_order

        slot_of = plan.slot_of()
        parts = plan.partition_map()
        linked = {p.id for p in plan.partitions if p.deps or driver.has_dependents(p.id)}
        independent: dict[str, list[str]] = {}
        for pid in driver.ready():
            if pid not in linked:
                independent.setdefault(slot_of[pid], []).append(pid)
        futures = self._submit_batches(job_json, independent, addresses, parts)
        dag_futures: dict[str, Any] = {}
        rank = {pid: k for ids in plan.assignment.values() for k, pid in enumerate(ids)}
        order = topological_order([p for p in plan.partitions if p.id in linked])[0] if linked else []
        for pid in order:
            # a dependency found in the cache has no future: its result travels as data
            deps = {dep: dag_futures[dep] if dep in dag_futures
                    else pack_outcomes([Outcome(dep, "", "cached", result=driver.result(dep))]) for dep in parts[pid].deps}
            # each slot's list is in plan order (critical path first): among ready nodes, Dask
            # runs the higher priority first
            dag_futures[pid] = self._submit(job_json, [pid], slot_of[pid], deps, addresses, parts, key=pid, priority=-rank[pid])
            futures.append(dag_futures[pid])
        return futures

    @staticmethod
    def _release(finished: list[Any]) -> None:
        """Let the workers drop the results the manager has now: a held result of a worker that
        leaves (retired before its walltime, cancelled) is computed again by Dask elsewhere, which
        runs its partitions twice and counts that worker as one that died running them. (A DAG
        node's dependents, all submitted up front, keep what they need on the scheduler's side.)"""
        for future in finished:
            future.release()

    async def _collect(self, finished: list[Any]) -> list[Outcome]:
        """The outcomes of finished tasks: one gather for those that succeeded, and failed
        outcomes for the partitions of tasks that raised (e.g. KilledWorker). A result the manager
        cannot load (`wire`) fails its own partition, saying which type and what to install."""
        outcomes: list[Outcome] = []
        ok = [future for future in finished if future.status == "finished"]
        if ok:
            try:
                values = await self.client.gather(ok)
            except Exception:  # noqa: BLE001 - one result was lost meanwhile: take them one by one below
                values = None
            if values is not None:
                for value in values:
                    outcomes += unpack_outcomes(value, "the manager")
                finished = [future for future in finished if future.status != "finished"]
        for future in finished:
            slot, ids = self._futures[future]
            try:
                outcomes += unpack_outcomes(await future, "the manager")
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the task's partitions failed
                if self.client.status not in ("running", "newly-created"):
                    raise AgiError(f"lost the Dask scheduler at {self.client.scheduler.address}: {type(exc).__name__}: {exc}",
                                   fix="check the scheduler host; the run's record lists what finished; "
                                       "`agi run APP --resume RUN` computes only the rest") from None
                stopped = [self._stopped[pid] for pid in ids if pid in self._stopped]
                cause = f"{stopped[-1]}; " if stopped else ""
                outcomes += [Outcome(pid, slot, "failed", error=f"{cause}{type(exc).__name__}: {exc}") for pid in ids]
        return outcomes

    def _submit(self, job_json: str, ids: list[str], slot: str, deps: dict[str, Any], addresses: dict[str, str],
                parts: dict[str, Any], *, key: str, priority: int = 0) -> Any:
        address = addresses.get(slot)
        keys, audit = self.context.keys, self.job.audit
        batch = pack([(parts[pid], keys.get(pid, ""), audit.get(pid, "")) for pid in ids])
        future = self.client.submit(run_batch, job_json, batch, slot, deps, key=f"agi-{self.context.run_id}-{key}",
                                    workers=[address] if address else None, allow_other_workers=bool(address),
                                    retries=self.retries_allowed, pure=False, priority=priority)
        self._futures[future] = (slot, ids)
        return future

    def _submit_batches(self, job_json: str, independent: dict[str, list[str]], addresses: dict[str, str],
                        parts: dict[str, Any]) -> list[Any]:
        """Cut each slot's independent partitions into batches and hand them to the elastic
        queues (`dask_elastic`), which submit a window per joined worker and keep the rest movable."""
        batches = []
        for slot, free in independent.items():
            count = min(len(free), max(self.max_tasks_per_slot, -(-len(free) // 1000)))
            # Round-robin over a heaviest-first list gives batches of similar weight.
            for k in range(count):
                batches.append(Batch(len(batches), slot, free[k::count]))
        assert self._elastic is not None

        def submit(batch: Batch, on: str) -> Any:
            address = self._elastic.joined.get(on) if self._elastic is not None else None
            return self._submit(job_json, batch.ids, batch.slot, {}, {batch.slot: address} if address else {}, parts,
                                key=f"{batch.slot}-b{batch.seq}")

        def weigh(batch: Batch) -> tuple[float, frozenset[str]]:
            return (float(sum(parts[pid].weight for pid in batch.ids)),
                    frozenset(need for pid in batch.ids for need in parts[pid].needs))

        return self._elastic.begin(batches, submit, weigh)

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

    async def _watch(self, elastic: ElasticBatches, pending: Any) -> None:
        """Look at the workers every `_WATCH_S` while the run goes: joins take work, leaves hand theirs on."""
        while True:
            await asyncio.sleep(_WATCH_S)
            try:
                futures = await elastic.poll()
            except Exception:  # noqa: BLE001 - the scheduler is gone: the run's own loop says so
                return
            if futures:
                pending.update(futures)
            await self._drain(elastic)
            await self._tend(elastic, pending)
            if elastic.joined_since_facts:
                elastic.joined_since_facts = False
                await self._refresh_facts()

    async def _drain(self, elastic: ElasticBatches) -> None:
        """Stop giving work to workers about to retire, and have the backend replace them now
        (`dask_retire`: a Slurm job's walltime), when its workers retire on their own."""
        from .dask_retire import Retirements

        if self._retirements is None:
            window = self._handle.backend.drain_window()
            if window is None:
                return
            self._retirements = Retirements(self.client, self._handle.backend, window, self.context.emit)
        try:
            await self._retirements.look(elastic)
        except Exception as exc:  # noqa: BLE001 - draining is a help: without it, Dask's lifetime still retires them
            self.context.emit(Notice(f"could not drain the workers that retire: {type(exc).__name__}: {exc}", level="warning"))

    async def _tend(self, elastic: ElasticBatches, pending: Any) -> None:
        """Let the backend replace workers that ended while work remains (`ClusterBackend.tend`:
        a Slurm job cancelled, preempted or out of walltime)."""
        try:
            await self._handle.backend.tend(work_left=bool(elastic.waiting()) or not pending.is_empty(), emit=self.context.emit)
        except Exception as exc:  # noqa: BLE001 - replacing workers is a help: the run goes on with those it has
            self.context.emit(Notice(f"could not replace the workers that left: {type(exc).__name__}: {exc}", level="warning"))

    async def _refresh_facts(self) -> None:
        """The versions and capabilities of workers that joined late, for the record."""
        try:
            self._facts.update(await self._worker_records(self.context.app_distribution or self.context.app,
                                                          self.context.app_version or ""))
        except Exception:  # noqa: BLE001 - a worker that left meanwhile: the record keeps what it had
            pass

    async def _until_a_worker(self, elastic: ElasticBatches, pending: Any) -> None:
        """No task is left in Dask but batches are queued: every worker left. Wait for one to
        join (the watcher submits to it), up to the join wait, then fail naming what is left."""
        wait = self._join_wait()
        while pending.is_empty():
            if elastic.stranded_for() > wait:
                raise AgiError(f"every worker left the cluster and none joined within {wait:g} s: "
                               f"{elastic.waiting()} batch(es) of partitions were never run",
                               fix="check the workers' hosts or jobs (agi cluster status APP); "
                                   "`agi run APP --resume RUN` computes only what is left")
            await asyncio.sleep(_WATCH_S)

    async def in_flight(self) -> list[InFlight]:
        """What each worker runs, as the scheduler last heard it. A worker silent for `_SILENT_S`
        (stopped, stuck in the kernel) may have gone silent before it said what it started: its
        tasks' started logs (`attempts`) name the partition, and the log's time says since when."""
        from .dask_watch import scheduler_view

        if self._handle is None:
            return []
        view = await self.client.run_on_scheduler(scheduler_view)
        slot_of = {name: slot for slot, name in self._handle.worker_names.items()}
        items = []
        for address, (name, host, worker_pid, running, silent_s, holding) in view.items():
            where = (slot_of.get(name, name), host, worker_pid or 0)
            if not running and silent_s > _SILENT_S:
                running = self._started_on(holding, time.time() - silent_s)
            items += [InFlight(pid, *where, since, worker=address) for pid, since in running]
        return items

    def _started_on(self, keys: list[str], silent_since: float) -> list[tuple[str, float]]:
        """The partition a silent worker last started, from the started logs of the tasks it
        holds; when none started, the first partition it holds, since it went silent."""
        ids_of = {future.key: ids for future, (_, ids) in self._futures.items()}
        held = [ids_of[key] for key in keys if key in ids_of]
        started = [last for ids in held if (last := last_started(started_dir(self.job.out_dir), ids)) is not None]
        if started:
            return [max(started, key=lambda item: item[1])]
        return [(held[0][0], silent_since)] if held else []

    async def stop_worker(self, item: InFlight, reason: str) -> None:
        """SIGKILL the worker's process through its nanny (which starts a fresh one), and have
        the scheduler drop the worker at once, so its tasks run elsewhere even if the process
        cannot die yet (stuck in the kernel on a dead NFS mount)."""
        import asyncio

        from .dask_watch import drop_worker, stop_worker_process

        self._stopped[item.id] = reason
        try:
            await asyncio.wait_for(self.client.run(stop_worker_process, workers=[item.worker], nanny=True, on_error="return"), 10)
        except (asyncio.TimeoutError, OSError):
            pass  # the scheduler drops it below all the same
        await self.client.run_on_scheduler(drop_worker, address=item.worker)

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

