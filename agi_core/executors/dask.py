"""Run a plan on a Dask cluster: each partition on its planned worker, results streamed back.

Partitions go to their slot's worker (``workers=[address]``, ``allow_other_workers=True``, so a
lost worker's partitions run elsewhere). Partitions that take part in no dependency are batched,
at most ``max_tasks_per_slot`` tasks per slot, so Dask's ~1 ms per-task overhead never dominates;
partitions with dependencies are one task each and receive their dependencies' outcomes as
futures, so Dask moves the data between workers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from ..app import Partition
from ..errors import AgiError
from ..plan import WorkPlan, topological_order
from .base import Executor, JobSpec, Outcome
from .worker import run_batch

__all__ = ["DaskExecutor"]


class DaskExecutor(Executor):
    name = "dask"

    def __init__(self, client: Any, run_id: str, *, max_tasks_per_slot: int = 16, retries: int = 1) -> None:
        self.client = client
        self.run_id = run_id
        self.max_tasks_per_slot = max_tasks_per_slot
        self.retries = retries
        self._futures: dict[Any, tuple[str, list[str]]] = {}  # future -> (slot, partition ids)

    async def _addresses(self) -> dict[str, str]:
        """Worker name (= slot name) → its current address, asked of the scheduler now."""
        identity = await self.client.scheduler.identity(n_workers=-1)
        return {str(w.get("name")): address for address, w in identity["workers"].items()}

    async def execute(self, plan: WorkPlan, job: JobSpec) -> AsyncIterator[Outcome]:
        from distributed import as_completed

        addresses = await self._addresses()
        job_json = json.dumps(asdict(job), default=str)
        parts = plan.partition_map()
        linked = {dep for p in plan.partitions for dep in p.deps} | {p.id for p in plan.partitions if p.deps}
        futures = self._submit_dag(plan, parts, linked, job_json, addresses)
        futures += self._submit_batches(plan, parts, linked, job_json, addresses)
        try:
            async for future in as_completed(futures, loop=self.client.loop):
                slot, ids = self._futures[future]
                try:
                    outcomes = await future
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the task's partitions failed
                    if self.client.status not in ("running", "newly-created"):
                        raise AgiError(f"lost the Dask scheduler at {self.client.scheduler.address}: {type(exc).__name__}: {exc}",
                                       fix="check the scheduler host; the run's record lists what finished") from None
                    outcomes = [Outcome(pid, slot, "failed", error=f"{type(exc).__name__}: {exc}") for pid in ids]
                for outcome in outcomes:
                    yield outcome
        finally:
            pending = [f for f in self._futures if not f.done()]
            if pending:
                await self.client.cancel(pending, force=True)

    def _submit_dag(self, plan: WorkPlan, parts: dict[str, Partition], linked: set[str], job_json: str,
                    addresses: dict[str, str]) -> list[Any]:
        slot_of = plan.slot_of()
        by_id: dict[str, Any] = {}
        for pid in topological_order([p for p in plan.partitions if p.id in linked])[0]:
            part = parts[pid]
            slot = slot_of[pid]
            deps = {dep: by_id[dep] for dep in part.deps}
            future = self.client.submit(run_batch, job_json, [part], slot, deps, key=f"agi-{self.run_id}-{pid}",
                                        workers=_where(addresses, slot), allow_other_workers=True, retries=self.retries, pure=False)
            by_id[pid] = future
            self._futures[future] = (slot, [pid])
        return list(by_id.values())

    def _submit_batches(self, plan: WorkPlan, parts: dict[str, Partition], linked: set[str], job_json: str,
                        addresses: dict[str, str]) -> list[Any]:
        futures = []
        for slot, ids in plan.assignment.items():
            free = [pid for pid in ids if pid not in linked]
            if not free:
                continue
            count = min(len(free), max(self.max_tasks_per_slot, -(-len(free) // 1000)))
            # Round-robin over a heaviest-first list gives batches of similar weight.
            for k in range(count):
                batch = [parts[pid] for pid in free[k::count]]
                future = self.client.submit(run_batch, job_json, batch, slot, {}, key=f"agi-{self.run_id}-{slot}-{k}",
                                            workers=_where(addresses, slot), allow_other_workers=True, retries=self.retries, pure=False)
                self._futures[future] = (slot, [p.id for p in batch])
                futures.append(future)
        return futures

    async def retries_by_partition(self) -> dict[str, int]:
        """How often a worker died while running each partition's task (Dask's "suspicious" count)."""
        keys = {future.key: ids for future, (_, ids) in self._futures.items()}

        def suspicious(dask_scheduler: Any, keys: list[str]) -> dict[str, int]:
            return {key: dask_scheduler.tasks[key].suspicious for key in keys if key in dask_scheduler.tasks}

        try:
            counts = await self.client.run_on_scheduler(suspicious, keys=list(keys))
        except Exception:  # noqa: BLE001 - retries are extra detail for the record; the run itself is done
            return {}
        return {pid: count for key, count in counts.items() if count for pid in keys[key]}

    async def close(self) -> None:
        self._futures.clear()


def _where(addresses: dict[str, str], slot: str) -> list[str] | None:
    address = addresses.get(slot)
    return [address] if address else None
