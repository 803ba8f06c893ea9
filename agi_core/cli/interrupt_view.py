"""What ``agi run`` says when a run is stopped (Ctrl-C, SIGTERM): how many partitions finished
and were kept, the run id, and the exact command that resumes it.

The run core emits `RunFinished` (run id, status, counts) even for an interrupted run, after it
wrote the record; `RunEnd` keeps it for the summary, passing every event on to the live view.

>>> from agi_core.base.events import RunFinished
>>> end = RunEnd(lambda event: None)
>>> end(RunFinished("20260101-000000-abcdef", "interrupted", 3.2, {"partitions": 40, "ok": 11, "cached": 1, "failed": 0,
...                                                               "not_run": 28}))
>>> print("\\n".join(interrupted_lines(end.event, "toy", "interrupted by Ctrl-C", resume_command("toy", end.event.run_id, []))))
interrupted by Ctrl-C: run 20260101-000000-abcdef of toy stopped; 12 of 40 partitions finished and were kept, 28 did not finish
resume: agi run toy --resume 20260101-000000-abcdef  (computes only the 28 not kept)
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from ..base.events import Event, EventSink, RunFinished, wants_partitions

__all__ = ["RunEnd", "interrupted_lines", "print_stopped", "resume_command"]


class RunEnd:
    """An event sink that remembers the run's `RunFinished` and passes every event to ``sink``."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.event: RunFinished | None = None

    @property
    def partition_events(self) -> bool:
        """What the sink it passes events to says (`events.wants_partitions`)."""
        return wants_partitions(self.sink)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            self.event = event
        self.sink(event)


def resume_command(app: str, run_id: str, apps_paths: Sequence[Path] | None, share: str | None = None) -> str:
    """``agi run APP --resume RUN_ID``, with the apps folders and the share the stopped call named
    (without them the app or the run may not be found)."""
    words = ["agi", "run", app, "--resume", run_id]
    for folder in apps_paths or ():
        words += ["--apps-path", str(Path(folder).absolute())]
    if share:
        words += ["--set", f"cluster.workers_data_path={share}"]
    return shlex.join(words)


def interrupted_lines(event: RunFinished, app: str, why: str, resume: str | None) -> list[str]:
    """The summary of a stopped run: ``why`` (``interrupted by Ctrl-C``, ``terminated by SIGTERM``),
    what finished and was kept, and ``resume`` (None: the run did not use the cache, nothing was kept)."""
    counts = event.counts
    total = counts.get("partitions", 0)
    kept = counts.get("ok", 0) + counts.get("cached", 0)
    failed = counts.get("failed", 0)
    left = total - kept
    finished = (f"{kept} of {total} partitions finished and were kept" if resume else
                f"{kept} of {total} partitions finished (not kept: the run did not use the cache)")
    failures = f", {failed} failed" if failed else ""
    lines = [f"{why}: run {event.run_id} of {app} stopped; {finished}{failures}, {left - failed} did not finish"]
    if resume:
        lines.append(f"resume: {resume}  (computes only the {left} not kept)")
    else:
        lines.append(f"run it again: agi run {app}")
    return lines


def print_stopped(end: RunEnd, app: str, why: str, *, apps_paths: Sequence[Path] | None, share: str | None,
                  use_cache: bool) -> None:
    """Print the summary of a stopped run on stderr (just ``why`` when it stopped before its record)."""
    from rich.markup import escape

    from .output import console

    err = console(stderr=True)
    if end.event is None:
        err.print(f"[yellow]{escape(why)}[/]")
        return
    resume = resume_command(app, end.event.run_id, apps_paths, share) if use_cache else None
    first, *rest = interrupted_lines(end.event, app, why, resume)
    err.print(f"[yellow]{escape(first)}[/]")
    for line in rest:
        err.print(escape(line))
