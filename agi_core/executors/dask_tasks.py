"""One run's Dask tasks: partitions submitted (batched per slot, or one task per DAG node) and
finished tasks turned back into outcomes.

Separate from `dask` (the executor's life cycle and its loop) because this is the round trip of
the tasks themselves: what each task carries, where it is asked to run, and how its result, or its
failure, becomes one outcome per partition. One `DaskTasks` serves one `DaskExecutor.execute`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base.errors import AgiError
from .base import ExecutionContext, Outcome
from .dask_elastic import ElasticBatches
from .elastic import Batch
from .wire import pack_outcomes, unpack_outcomes
from .worker import pack, run_batch

if TYPE_CHECKING:
    from ..plan import GraphDriver, WorkPlan

__all__ = ["DaskTasks", "release"]


class DaskTasks:
    """Submits one run's partitions and collects their outcomes. ``futures`` (the executor's,
    shared) maps each task's future to its slot and partition ids."""

    def __init__(self, client: Any, context: ExecutionContext, job_json: str, futures: dict[Any, tuple[str, list[str]]], *,
                 max_tasks_per_slot: int, retries: int) -> None:
        self.client = client
        self.context = context
        self.job_json = job_json
        self.futures = futures
        self.max_tasks_per_slot = max_tasks_per_slot
        self.retries_allowed = retries

    def submit_all(self, plan: WorkPlan, driver: GraphDriver, addresses: dict[str, str], elastic: ElasticBatches) -> list[Any]:
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
        futures = self._submit_batches(independent, parts, elastic)
        dag_futures: dict[str, Any] = {}
        rank = {pid: k for ids in plan.assignment.values() for k, pid in enumerate(ids)}
        order = topological_order([p for p in plan.partitions if p.id in linked])[0] if linked else []
        for pid in order:
            # a dependency found in the cache has no future: its result travels as data
            deps = {dep: dag_futures[dep] if dep in dag_futures
                    else pack_outcomes([Outcome(dep, "", "cached", result=driver.result(dep))]) for dep in parts[pid].deps}
            # each slot's list is in plan order (critical path first): among ready nodes, Dask
            # runs the higher priority first
            dag_futures[pid] = self.submit([pid], slot_of[pid], deps, addresses, parts, key=pid, priority=-rank[pid])
            futures.append(dag_futures[pid])
        return futures

    def submit(self, ids: list[str], slot: str, deps: dict[str, Any], addresses: dict[str, str],
               parts: dict[str, Any], *, key: str, priority: int = 0) -> Any:
        address = addresses.get(slot)
        keys, audit = self.context.keys, self.context.job.audit
        batch = pack([(parts[pid], keys.get(pid, ""), audit.get(pid, "")) for pid in ids])
        future = self.client.submit(run_batch, self.job_json, batch, slot, deps, key=f"agi-{self.context.run_id}-{key}",
                                    workers=[address] if address else None, allow_other_workers=bool(address),
                                    retries=self.retries_allowed, pure=False, priority=priority)
        self.futures[future] = (slot, ids)
        return future

    def _submit_batches(self, independent: dict[str, list[str]], parts: dict[str, Any], elastic: ElasticBatches) -> list[Any]:
        """Cut each slot's independent partitions into batches and hand them to the elastic
        queues (`dask_elastic`), which submit a window per joined worker and keep the rest movable."""
        batches = []
        for slot, free in independent.items():
            count = min(len(free), max(self.max_tasks_per_slot, -(-len(free) // 1000)))
            # Round-robin over a heaviest-first list gives batches of similar weight.
            for k in range(count):
                batches.append(Batch(len(batches), slot, free[k::count]))

        def submit(batch: Batch, on: str) -> Any:
            address = elastic.joined.get(on)
            return self.submit(batch.ids, batch.slot, {}, {batch.slot: address} if address else {}, parts,
                               key=f"{batch.slot}-b{batch.seq}")

        def weigh(batch: Batch) -> tuple[float, frozenset[str]]:
            return (float(sum(parts[pid].weight for pid in batch.ids)),
                    frozenset(need for pid in batch.ids for need in parts[pid].needs))

        return elastic.begin(batches, submit, weigh)

    async def collect(self, finished: list[Any], stopped: dict[str, str]) -> list[Outcome]:
        """The outcomes of finished tasks: one gather for those that succeeded, and failed
        outcomes for the partitions of tasks that raised (e.g. KilledWorker). A result the manager
        cannot load (`wire`) fails its own partition, saying which type and what to install.
        ``stopped``: partition -> why its worker was stopped (a hang), said in its error."""
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
            slot, ids = self.futures[future]
            try:
                outcomes += unpack_outcomes(await future, "the manager")
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the task's partitions failed
                if self.client.status not in ("running", "newly-created"):
                    raise AgiError(f"lost the Dask scheduler at {self.client.scheduler.address}: {type(exc).__name__}: {exc}",
                                   fix="check the scheduler host; the run's record lists what finished; "
                                       "`agi run APP --resume RUN` computes only the rest") from None
                causes = [stopped[pid] for pid in ids if pid in stopped]
                cause = f"{causes[-1]}; " if causes else ""
                outcomes += [Outcome(pid, slot, "failed", error=f"{cause}{type(exc).__name__}: {exc}") for pid in ids]
        return outcomes


def release(finished: list[Any]) -> None:
    """Let the workers drop the results the manager has now: a held result of a worker that
    leaves (retired before its walltime, cancelled) is computed again by Dask elsewhere, which
    runs its partitions twice and counts that worker as one that died running them. (A DAG
    node's dependents, all submitted up front, keep what they need on the scheduler's side.)"""
    for future in finished:
        future.release()
