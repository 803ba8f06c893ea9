"""Live runs: the running jobs of this server and the running records of the share, and a running
record's events as server-sent events (from its partition log)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ...base.errors import AgiError
from ..detached import process_of_run
from ..files import run_store, safe_name
from ..live import RecordFollower, end_summary, running_records
from ..rendering import render

__all__ = ["router"]

router = APIRouter()

TICK_S = 0.5  # a record is read again at most this often (its manager flushes its log every 2 s)


def record_view(request: Request, app: str, run_id: str) -> dict[str, Any]:
    """The template context of a running record followed from its log (`_job.html`): cancellable
    when it is a run a UI started (this server before it restarted) whose process still runs."""
    cancellable = process_of_run(request.app.state.config.state_dir(), run_id) is not None
    job = SimpleNamespace(id=run_id, kind="run", title=f"run {app} {run_id} (followed from its record)", cancellable=cancellable)
    return {"job": job, "events_url": f"/api/runs/{app}/{run_id}/events", "result_url": f"/runs/{app}/{run_id}/result",
            "cancel_url": f"/api/runs/{app}/{run_id}/cancel"}


def live_views(request: Request, app: str | None) -> dict[str, Any]:
    """What the ORCHESTRATE page of ``app`` shows as running: its install and run jobs on this
    server, else a running record of the app (a CLI run, or a run from before `agi ui` restarted)."""
    if app is None:
        return {}
    jobs = request.app.state.jobs
    views: dict[str, Any] = {"install_job": jobs.running("install", app), "compare_job": jobs.running("compare", app)}
    run = jobs.running("run", app)
    if run is not None:
        views["run_view"] = {"job": run}
    else:
        try:
            records = running_records(run_store(request.app.state.config), safe_name(app))
        except AgiError:
            records = []
        mine = {run_id for job in jobs.all() for run_id in job.run_ids}
        record = next((r for r in records if r.run_id not in mine), None)
        if record is not None:
            views["run_view"] = record_view(request, app, record.run_id)
    return views


@router.get("/api/live")
def live(request: Request) -> dict:
    """What runs now: this server's jobs, and the share's running records (from the CLI too)."""
    jobs = [job.summary() for job in request.app.state.jobs.all() if not job.done]
    records = running_records(run_store(request.app.state.config))
    return {"jobs": jobs, "records": [{"app": r.app.name, "run_id": r.run_id, "started": r.started, "done": r.totals.partitions
                                       - r.totals.not_run, "partitions": r.totals.partitions} for r in records]}


async def _follow(request: Request, app: str, run_id: str) -> AsyncIterator[str]:
    store = run_store(request.app.state.config)
    follower, sent = RecordFollower(), 0
    yield "retry: 2000\n\n"
    while True:
        record = store.find(str(store.run_dir(app, run_id)))
        events = follower.events(record)
        if events:
            sent += len(events)
            yield f"id: {sent}\ndata: {json.dumps(events)}\n\n"
        if record.status != "running":
            yield f"event: end\ndata: {json.dumps(end_summary(record))}\n\n"
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(TICK_S)


@router.get("/api/runs/{app}/{run_id}/events")
async def record_events(request: Request, app: str, run_id: str) -> StreamingResponse:
    """A running record's events, read from its manifest and partition log until it ends."""
    return StreamingResponse(_follow(request, safe_name(app), safe_name(run_id)), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/api/runs/{app}/{run_id}/cancel")
async def cancel_record(request: Request, app: str, run_id: str) -> dict:
    """Stop a UI-started run this server follows from its record (started before `agi ui`
    restarted), as Ctrl-C does: its record says ``interrupted``; its event stream then ends."""
    process = process_of_run(request.app.state.config.state_dir(), safe_name(run_id))
    if process is None:
        raise AgiError(f"run {run_id} of {app} has no process this UI started, or it has ended",
                       fix=f"a run started from the command line is stopped there (Ctrl-C), or: agi runs show {run_id}")
    asyncio.get_running_loop().create_task(process.stop())  # SIGINT now; killed if it has not ended in a minute
    return {"run_id": run_id, "app": app, "status": "cancelling"}


@router.get("/runs/{app}/{run_id}/result")
def record_result(request: Request, app: str, run_id: str) -> Response:
    """The panel shown when a followed record ends."""
    store = run_store(request.app.state.config)
    record = store.find(str(store.run_dir(safe_name(app), safe_name(run_id))))
    return render(request, "_record_result.html", record=record)
