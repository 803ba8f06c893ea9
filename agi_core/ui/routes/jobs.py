"""Background jobs: their state as JSON, their events as server-sent events, their result panel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ...base.errors import AgiError
from ..jobs import Job
from ..rendering import render

__all__ = ["router"]

router = APIRouter()

TICK_S = 0.1  # events are sent in batches, at most this often (10 updates a second)


def job_of(request: Request, job_id: str) -> Job:
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise AgiError(f"no job {job_id!r} on this server", fix="start it again from its page")
    return job


@router.get("/api/jobs")
def list_jobs(request: Request) -> list[dict]:
    return [job.summary() for job in request.app.state.jobs.all()]


@router.get("/api/jobs/{job_id}")
def job_state(request: Request, job_id: str) -> dict:
    return job_of(request, job_id).summary()


@router.post("/api/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: str) -> dict:
    """Stop a running run or pipeline run, as Ctrl-C does: its record says ``interrupted`` and
    everything it started is stopped. The job's event stream then ends with status ``cancelled``."""
    job = job_of(request, job_id)
    if not job.cancel():
        why = "it has ended already" if job.done else "an install is never stopped half-way through a host"
        raise AgiError(f"job {job_id} ({job.title}) cannot be cancelled: {why}", fix="wait for it to end")
    return job.summary()


async def _stream(request: Request, job: Job, start: int) -> AsyncIterator[str]:
    sent = start
    yield "retry: 1000\n\n"
    while True:
        finished = job.done  # read before the events: none is missed between the two
        events = job.events[sent:]
        if events:
            sent += len(events)
            yield f"id: {sent}\ndata: {json.dumps(events)}\n\n"
        if finished and sent >= len(job.events):
            yield f"event: end\ndata: {json.dumps(job.summary())}\n\n"
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(TICK_S)


@router.get("/api/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    """The job's events, batched (a JSON list per message), then an ``end`` message with its summary.
    A reconnecting client (``Last-Event-ID``) gets only what it has not seen."""
    job = job_of(request, job_id)
    start = int(request.headers.get("last-event-id") or 0)
    return StreamingResponse(_stream(request, job, start), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/jobs/{job_id}/result")
def job_result(request: Request, job_id: str) -> Response:
    """The panel shown when a job ends: its outcome, images, links."""
    job = job_of(request, job_id)
    compare = None
    if job.kind == "compare" and job.result.get("runs"):
        from ..compare import compare_rows
        from ..files import run_store

        compare = compare_rows(run_store(request.app.state.config), str(job.app), list(job.result["runs"]))
    from ..error_actions import actions_for
    # the cluster's dashboard (or why it has none) is drawn by the job's panel from its cluster_ready event
    return render(request, "_job_result.html", job=job, compare=compare, actions=actions_for(job))
