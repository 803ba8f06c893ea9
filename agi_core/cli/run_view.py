"""`agi run`'s live view: one progress bar overall and one per slot, drawn from the run's events.

The run core only emits events (see `agi_core.base.events`); this view is one sink for them, on
stderr, so stdout keeps only the run's outcome (or its JSON).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base.events import Event, Notice, PartitionDone, Phase, RunFinished, RunStarted
from .elastic_view import elastic_line

if TYPE_CHECKING:
    from ..base.events import ClusterReady

__all__ = ["MAX_SLOT_BARS", "RunView", "cluster_line"]

MAX_SLOT_BARS = 16  # beyond this, per-slot bars stop being readable: the overall bar only


def cluster_line(scheduler: str, dashboard: str | None = None, warm: bool = False, note: str = "") -> str:
    """``Dask scheduler ADDRESS, dashboard URL (warm cluster)``, then the note on its own line.

    >>> cluster_line("tcp://10.0.0.1:8786", "http://10.0.0.1:8787/status", warm=True)
    'Dask scheduler tcp://10.0.0.1:8786, dashboard http://10.0.0.1:8787/status (warm cluster)'
    """
    return (f"Dask scheduler {scheduler}" + (f", dashboard {dashboard}" if dashboard else "")
            + (" (warm cluster)" if warm else "") + (f"\n{note}" if note else ""))


def _cluster_ready() -> type[ClusterReady]:
    """`events.ClusterReady`, loaded when a cluster run says it is up (a local run never does)."""
    from ..base.events import ClusterReady

    return ClusterReady


class RunView:
    """Shows a run's progress on stderr; pass the view itself as ``on_event`` of `AGI.run`.

    When ``enabled``: `RunStarted` opens the bars (one per slot when the plan has 2 to
    `MAX_SLOT_BARS` slots), `PartitionDone` advances them, `RunFinished` stops them;
    `ClusterReady`, ``Phase("compiling")`` and `Notice` print a line. When not enabled, only
    warnings (``Notice(level="warning")``) print. Other events are ignored. Use it as a context
    manager so the bars stop however the run ends.
    """

    def __init__(self, *, enabled: bool, console: Any = None) -> None:
        self.enabled = enabled
        self._console = console
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    @property
    def partition_events(self) -> bool:
        """Without the bars, nothing here reads `PartitionDone`: the run need not make them (`events.wants_partitions`)."""
        return self.enabled

    def __enter__(self) -> RunView:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PartitionDone):
            self._advance(event)
        elif isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, RunFinished):
            self._stop()
        elif event.kind == "cluster_ready" and isinstance(event, _cluster_ready()):
            self._say(cluster_line(event.scheduler, event.dashboard, event.warm, event.note))
        elif isinstance(event, Phase) and event.name == "compiling":
            self._say(f"compiling {event.detail}" if event.detail else "compiling")
        elif isinstance(event, Notice):
            self._say(event.text, warning=event.level == "warning")
        elif (line := elastic_line(event)) is not None:  # workers joining, leaving, partitions moved
            self._say(line)

    @property
    def console(self) -> Any:
        if self._console is None:
            from .output import console

            self._console = console(stderr=True)
        return self._console

    def _say(self, text: str, *, warning: bool = False) -> None:
        if not (self.enabled or warning):
            return
        from rich.markup import escape

        line = f"[yellow]warning:[/] {escape(text)}" if warning else escape(text)
        (self._progress.console if self._progress is not None else self.console).print(line)

    def _start(self, event: RunStarted) -> None:
        if not self.enabled or not event.partitions or self._progress is not None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ..base.modes import Mode

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=self.console, transient=False)
        self._progress.start()
        self._tasks["*"] = self._progress.add_task(f"[bold]{event.app} mode {Mode(event.mode)}", total=event.partitions)
        slots = [(slot, count) for slot, count in event.slots.items() if count]
        if 1 < len(slots) <= MAX_SLOT_BARS:
            for slot, count in slots:
                self._tasks[slot] = self._progress.add_task(f"  {slot}", total=count)

    def _advance(self, event: PartitionDone) -> None:
        if self._progress is None:
            return
        self._progress.advance(self._tasks["*"])
        if event.slot in self._tasks:
            self._progress.advance(self._tasks[event.slot])

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
