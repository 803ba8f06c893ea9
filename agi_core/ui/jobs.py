"""Background jobs (a run, an install, a pipeline run): each in its own thread and event loop, so a
mode-0 run computing in its loop never stalls the server; their events are kept for SSE readers."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..base.errors import AgiError
from ..base.events import Event

__all__ = ["Job", "Jobs"]

Work = Callable[["Job"], Awaitable[dict[str, Any]]]


@dataclass
class Job:
    """One background action and everything it reported so far."""

    id: str
    kind: str  # run, install, pipeline
    title: str
    app: str | None = None
    status: str = "running"  # running, ok, failed, cancelled
    started: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    fix: str | None = None
    cancellable: bool = True
    run_ids: list[str] = field(default_factory=list)  # the runs it started (a compare job starts several)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _task: asyncio.Task[dict[str, Any]] | None = field(default=None, repr=False)
    _cancel_asked: bool = field(default=False, repr=False)

    def cancel(self) -> bool:
        """Ask the job to stop, as Ctrl-C stops the CLI: the core records the run (or pipeline run)
        as interrupted and stops what it started. False when it cannot be cancelled (done already,
        or an install, which must not stop half-way through a host)."""
        loop, task = self._loop, self._task
        if self.done or not self.cancellable:
            return False
        self._cancel_asked = True  # read by the job's task as it starts, if it has not yet
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)
        return True

    def emit(self, event: Event) -> None:
        """The `EventSink` given to the core: events are stored with the time they arrived."""
        self.add({**event.as_dict(), "at": time.time()})

    def add(self, data: dict[str, Any]) -> None:
        """An event as a dict with the time it happened (``at``), e.g. read from a run's process."""
        data["t"] = round(max(0.0, data.pop("at", time.time()) - self.started), 4)
        if data["kind"] == "run_started":  # the runs it made, found again by their record's page
            self.run_ids.append(data["run_id"])
        self.events.append(data)  # list.append is atomic

    @property
    def done(self) -> bool:
        return self.status != "running"

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "app": self.app, "status": self.status, "cancellable": self.cancellable,
                "error": self.error, "fix": self.fix, "result": self.result, "events": len(self.events)}


class Jobs:
    """The jobs of one UI server (kept on its app state, never module-level)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def running(self, kind: str, app: str | None = None) -> Job | None:
        """The newest job of ``kind`` (for ``app``) still running: a page opened again finds it."""
        return next((j for j in self.all() if not j.done and j.kind == kind and (app is None or j.app == app)), None)

    def of_run(self, run_id: str) -> Job | None:
        """The job that started run ``run_id`` (its ``run_started`` event names it)."""
        return next((j for j in self.all() if run_id in j.run_ids), None)

    def all(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)

    def start(self, kind: str, title: str, work: Work, *, app: str | None = None, cancellable: bool = True) -> Job:
        """Run ``work(job)`` in a new thread with its own event loop; returns at once."""
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, title=title, app=app, cancellable=cancellable)
        self._jobs[job.id] = job

        async def main() -> dict[str, Any]:
            job._loop, job._task = asyncio.get_running_loop(), asyncio.current_task()  # type: ignore[assignment]
            if job._cancel_asked:  # cancelled before its task existed
                raise asyncio.CancelledError
            return await work(job)

        def body() -> None:
            try:
                job.result = asyncio.run(main()) or {}
                job.status = "ok"
            except asyncio.CancelledError:
                job.error, job.status = "cancelled from the UI: its record says interrupted", "cancelled"
                started = next((e for e in reversed(job.events) if e["kind"] == "run_started"), None)
                if started:  # the record of the run it stopped
                    job.result = {**job.result, "run_id": started["run_id"], "app": started["app"]}
            except AgiError as exc:
                job.error, job.fix = exc.message, exc.fix
                job.result = {**job.result, **getattr(exc, "ui_result", {})}
                job.status = "failed"
            except Exception as exc:  # noqa: BLE001 - shown to the user, with the traceback
                job.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
                job.status = "failed"

        threading.Thread(target=body, name=f"agi-ui-{kind}-{job.id}", daemon=True).start()
        return job
