"""A live progress display for a run: one bar overall and one per slot (rich, on stderr)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .executors import Outcome
    from .plan import WorkPlan

__all__ = ["RunProgress"]

_MAX_SLOT_BARS = 16  # beyond this, per-slot bars stop being readable


class RunProgress:
    """Shows partitions done, overall and per slot. Does nothing when ``enabled`` is false."""

    def __init__(self, plan: WorkPlan, *, enabled: bool, title: str) -> None:
        self.enabled = enabled and bool(plan.partitions)
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._plan = plan
        self._title = title

    def __enter__(self) -> RunProgress:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self._progress.start()
        self._tasks["*"] = self._progress.add_task(f"[bold]{self._title}", total=len(self._plan.partitions))
        slots = [(slot, ids) for slot, ids in self._plan.assignment.items() if ids]
        if 1 < len(slots) <= _MAX_SLOT_BARS:
            for slot, ids in slots:
                self._tasks[slot] = self._progress.add_task(f"  {slot}", total=len(ids))
        return self

    def update(self, outcome: Outcome) -> None:
        if self._progress is None:
            return
        self._progress.advance(self._tasks["*"])
        if outcome.slot in self._tasks:
            self._progress.advance(self._tasks[outcome.slot])

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
