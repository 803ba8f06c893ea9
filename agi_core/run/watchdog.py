"""The run's watchdog: names partitions that run far longer than expected, and stops the worker
of one that runs past ``[cluster] partition_timeout`` (`agi_core.base.stalls` says when).

About once a second it asks the executor what is in flight (`Executor.in_flight`: a pool slot's
shared progress, a Dask worker's last heartbeat), keeps that list in the run folder
(``in_flight.json``, which `agi runs show` prints for a running run), and acts on the late ones.
A frozen worker (SIGSTOP, a dead NFS mount) keeps its last report, so its partition's time grows
until it is named, then stopped; the executor retries or fails the partition, and the run ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..base.atomic import write_text_atomic
from ..base.events import EventSink, Notice
from ..base.stalls import RateMeter, StallPolicy
from ..executors import Executor, InFlight, Outcome
from ..provenance import iso
from ..provenance.writer import IN_FLIGHT_FILE

__all__ = ["Watchdog"]

TICK_S = 1.0

log = logging.getLogger(__name__)


class Watchdog:
    """Watches one run's executor. ``weight_of``: a partition's weight (its expected time is the
    weight times the rate the run has shown so far). ``setting``: ``partition_timeout`` as written."""

    def __init__(self, executor: Executor, setting: float | str, weight_of: Callable[[str], float], emit: EventSink,
                 run_dir: Path) -> None:
        self.executor = executor
        self.setting = setting
        self.policy = StallPolicy.parse(setting)
        self.weight_of = weight_of
        self.emit = emit
        self.path = run_dir / IN_FLIGHT_FILE
        self.meter = RateMeter()
        self.stopped: list[str] = []  # what was stopped, as told to the user
        self._named: set[tuple[str, int]] = set()  # (partition, pid) already named late
        self._stopping: set[tuple[str, int]] = set()
        self._shown: list[tuple[str, str, int]] = []

    def finished(self, outcome: Outcome) -> None:
        """Count a computed partition's time in the rate (cache hits and skips took none)."""
        if outcome.status in ("ok", "failed") and outcome.end > outcome.start > 0:
            self.meter.add(weight=self.weight_of(outcome.id), seconds=outcome.duration_s)

    async def run(self) -> None:
        """Check every `TICK_S` until cancelled; a failed check is logged and the next one tried."""
        try:
            while True:
                await asyncio.sleep(TICK_S)
                try:
                    await self.check()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:  # noqa: BLE001 - the watchdog must never be what fails a run
                    log.debug("watchdog check failed", exc_info=True)
        finally:
            self.path.unlink(missing_ok=True)

    async def check(self, now: float | None = None) -> None:
        items = await self.executor.in_flight()
        now = time.time() if now is None else now
        self._record(items, now)
        for item in items:
            expected = self.meter.expected(self.weight_of(item.id))
            elapsed = now - item.since
            timeout = self.policy.timeout(expected)
            handle = (item.id, item.pid)
            if timeout is not None and elapsed > timeout and handle not in self._stopping:
                self._stopping.add(handle)
                reason = (f"partition {item.id!r} ran for {elapsed:.0f} s on {item.where()} without finishing, past "
                          f"[cluster] partition_timeout = {self.setting!r}{_expected(expected)}: its worker was stopped")
                self.stopped.append(reason)
                self.emit(Notice(reason, level="warning"))
                await self.executor.stop_worker(item, reason)
            elif elapsed > self.policy.late_after(expected) and handle not in self._named:
                self._named.add(handle)
                then = (f"it will be stopped at {timeout:.0f} s ([cluster] partition_timeout = {self.setting!r})"
                        if timeout is not None else "[cluster] partition_timeout is off: it will not be stopped")
                self.emit(Notice(f"partition {item.id!r} has run for {elapsed:.0f} s on {item.where()}{_expected(expected)}; "
                                 f"{then}", level="warning"))

    def _record(self, items: list[InFlight], now: float) -> None:
        """Keep ``in_flight.json`` in step with what runs (written only when that changes)."""
        shown = sorted((item.id, item.slot, item.pid) for item in items)
        if shown == self._shown:
            return
        self._shown = shown
        write_text_atomic(self.path, json.dumps([{"id": item.id, "slot": item.slot, "host": item.host, "pid": item.pid,
                                                   "since": iso(item.since)} for item in items]))


def _expected(expected: float | None) -> str:
    if expected is None:
        return " (no partition has finished yet)"
    return f" (expected about {expected:.3g} s)" if expected >= 0.001 else " (expected under 1 ms)"
