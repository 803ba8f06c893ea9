"""A non-idempotent app for the lost-worker tests: each ``work()`` appends ``<partition> <pid>``
to a ledger file on the share, so a partition whose ``work()`` ran twice has two lines there.

The partition named by ``hold`` waits, once its line is written, until the file ``gate`` exists:
a test kills its worker meanwhile, and the timing is the test's, not the scheduler's.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext

HOLD_LIMIT_S = 120.0  # a held partition gives up after this (a test that died must not leave it waiting)


class LedgerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 6
    ledger: str = ""  # the file each work() appends its line to ("": none)
    hold: str = ""  # the partition that waits for `gate`
    gate: str = ""  # the file whose existence lets the held partition finish
    chain: bool = False  # partition i depends on i-1 (a DAG: one Dask task per partition)
    sleep: float = 0.0  # seconds each work() takes after writing its line (a run that outlasts a worker)


class Ledger(App):
    Args = LedgerArgs

    def plan(self, args: LedgerArgs) -> list[Partition]:
        return [Partition(id=f"l{i}", payload=i, deps=(f"l{i - 1}",) if args.chain and i else ()) for i in range(args.n)]

    def work(self, part: Partition, ctx: WorkContext) -> int:
        if ctx.args.ledger:
            fd = os.open(ctx.args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{part.id} {os.getpid()}\n".encode())
            finally:
                os.close(fd)
        time.sleep(ctx.args.sleep)
        if part.id == ctx.args.hold:
            deadline = time.monotonic() + HOLD_LIMIT_S
            while not os.path.exists(ctx.args.gate):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{ctx.args.gate} never appeared")
                time.sleep(0.02)
        return part.payload

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> int:
        return sum(results.values())
