"""Mode 0: every partition in this process, in the plan's order, dependencies first.

Nothing is started and nothing is forked, so a debugger's breakpoints in `App.work` work.

No result crosses a pickle boundary here: results and dependencies' results stay objects of this
process, which has every package the app declares (`app.interpreter.check_in_process` fails the run
before any partition otherwise). The only pickles a mode-0 run reads are cache entries, which
workers in the app's own environment may have written: the run's cache loads them before the
executor starts, and one this process cannot load is not used, its partition computed again here.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .base import Executor, Outcome, settle
from .partition_runner import PartitionRunner

if TYPE_CHECKING:
    from ..plan import GraphDriver, WorkPlan

__all__ = ["SequentialExecutor"]

#: outcomes are reported (their entries written first, as one pack) at least this often...
_REPORT_S = 0.2
#: ...and at once after a partition that ran this long (a pack then costs little beside it)
_SLOW_S = 0.005


class SequentialExecutor(Executor):
    """Runs the plan slot by slot, in each slot's order, a partition only after its dependencies."""

    name = "sequential"

    async def start(self, plan: WorkPlan) -> None:
        self._runner = PartitionRunner(self.job)

    async def execute(self, plan: WorkPlan, driver: GraphDriver) -> AsyncIterator[Outcome]:
        slot_of = plan.slot_of()
        rank = {pid: k for k, pid in enumerate(pid for ids in plan.assignment.values() for pid in ids)}
        parts = plan.partition_map()
        keys = self.context.keys
        ready: list[tuple[int, str]] = []

        def refill() -> None:
            for pid in driver.ready():
                heapq.heappush(ready, (rank[pid], pid))

        refill()
        pending: list[Outcome] = []  # settled, not reported yet: their cache entries are not written yet
        oldest = 0.0
        try:
            while ready:
                _, pid = heapq.heappop(ready)
                await asyncio.sleep(0)  # a cancellation (Ctrl-C) lands between partitions
                started = time.monotonic()
                ran = self._runner.run(parts[pid], slot_of[pid], driver.inputs(pid), key=keys.get(pid, ""))
                ran.result_pickle = None  # no wire here: the run keeps the result, not also its cache entry's pickle
                now = time.monotonic()
                oldest = oldest if pending else now
                pending.extend(settle(driver, [ran], slot_of))  # its dependants may run next: the driver knows now
                refill()
                # Report (and first write the cache entries of) what ran, in one pack, when it is the
                # end, when a partition took long enough that a pack costs little beside it, or at least
                # every `_REPORT_S`: a pack per partition made 100,000 tiny ones 10x slower.
                if not ready or now - started >= _SLOW_S or now - oldest >= _REPORT_S:
                    self._runner.flush()  # reported as stored: written
                    reported, pending = pending, []
                    for outcome in reported:
                        yield outcome
        except (KeyboardInterrupt, asyncio.CancelledError):
            if pending:  # stopped (Ctrl-C): what ran before is reported (its entries written) first
                self._runner.flush()
                reported, pending = pending, []
                for outcome in reported:
                    yield outcome
            raise

    async def close(self) -> None:
        pass
