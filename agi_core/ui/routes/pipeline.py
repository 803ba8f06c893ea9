"""The PIPELINE page: the steps of ``lab_steps.toml``, their edits, and running them with live status."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...base.errors import AgiError
from ..actions import start_pipeline
from ..apps import app_names
from ..rendering import render
from ..steps import add_step, move_step, refresh_steps, remove_step, set_deps, step_rows

__all__ = ["router"]

router = APIRouter()


def _steps_panel(request: Request, error: AgiError | None = None, job=None) -> Response:
    config = request.app.state.config
    return render(request, "_steps.html", rows=step_rows(config), error=error, job=job, file=config.steps_file.absolute())


@router.get("/pipeline")
def pipeline_page(request: Request) -> Response:
    config = request.app.state.config
    return render(request, "pipeline.html", page="pipeline", rows=step_rows(config), apps=app_names(config), error=None,
                  job=request.app.state.jobs.running("pipeline"), file=config.steps_file.absolute())  # a reload finds it


def _edit(request: Request, action) -> Response:
    try:
        action()
    except AgiError as exc:
        return _steps_panel(request, error=exc)
    return _steps_panel(request)


@router.post("/pipeline/add")
async def add(request: Request) -> Response:
    form = await request.form()
    config = request.app.state.config
    return _edit(request, lambda: add_step(config, str(form.get("app")), str(form.get("kind", "run")),
                                           step_id=str(form.get("step_id") or "") or None))


@router.post("/pipeline/steps/{step_id}/move")
async def move(request: Request, step_id: str) -> Response:
    form = await request.form()
    return _edit(request, lambda: move_step(request.app.state.config, step_id, int(str(form.get("offset", "0")))))


@router.post("/pipeline/steps/{step_id}/deps")
async def deps(request: Request, step_id: str) -> Response:
    form = await request.form()
    chosen = [d.strip() for d in str(form.get("deps", "")).replace(",", " ").split()]
    return _edit(request, lambda: set_deps(request.app.state.config, step_id, chosen))


@router.post("/pipeline/steps/{step_id}/remove")
def remove(request: Request, step_id: str) -> Response:
    return _edit(request, lambda: remove_step(request.app.state.config, step_id))


@router.post("/pipeline/steps/{step_id}/refresh")
def refresh(request: Request, step_id: str) -> Response:
    """Refresh a stale step: its snippet generated again from today's settings."""
    return _edit(request, lambda: refresh_steps(request.app.state.config, [step_id]))


@router.post("/pipeline/refresh-stale")
def refresh_stale(request: Request) -> Response:
    """Refresh every stale step (the action offered when a pipeline run was refused for them)."""
    return _edit(request, lambda: refresh_steps(request.app.state.config))


@router.post("/pipeline/run")
async def run(request: Request) -> Response:
    form = await request.form()
    step, start_from = str(form.get("step") or ""), str(form.get("from") or "")
    try:
        job = start_pipeline(request.app.state.jobs, request.app.state.config, steps=(step,) if step else (),
                             from_step=start_from or None)
    except AgiError as exc:
        return _steps_panel(request, error=exc)
    return _steps_panel(request, job=job)
