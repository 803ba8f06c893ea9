"""The JSON API (docs/ui.md): apps, settings, plan, runs, steps. The pages use the same functions.

Authenticate with ``Authorization: Bearer TOKEN`` (or the pages' cookie plus ``X-CSRF-Token``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request

from ...base.errors import AgiError
from ...settings import save_settings_values
from ..actions import start_install, start_pipeline, start_run
from ..apps import app_names, env_for
from ..files import run_store, safe_name
from ..plans import discard, move_partitions, plan_view
from ..settings_form import form_fields
from ..steps import add_step, move_step, set_deps, step_rows

__all__ = ["router"]

router = APIRouter(prefix="/api")


@router.get("/apps")
def apps(request: Request) -> list[str]:
    return app_names(request.app.state.config)


@router.get("/settings/{app}")
def settings(request: Request, app: str) -> dict[str, Any]:
    """Every editable value with its source (app settings, profile NAME, default)."""
    env = env_for(request.app.state.config, app)
    return {"app": app, "file": str(env.settings_file),
            "fields": [{"key": f.key, "value": f.value, "source": f.source, "kind": f.kind, "help": f.help} for f in form_fields(env)],
            "resolved": env.settings().as_dict()}


@router.post("/settings/{app}")
def save_settings(request: Request, app: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """``{"set": ["args.n=7", "cluster.pool=true"]}``: written to app_settings.toml, comments kept;
    on an invalid value nothing is written and the error names the key."""
    assignments = body.get("set")
    if not isinstance(assignments, list) or not all(isinstance(a, str) for a in assignments):
        raise AgiError('expected {"set": ["KEY=VALUE", ...]}', fix='e.g. {"set": ["args.n=7"]}')
    env = env_for(request.app.state.config, app)
    saved = save_settings_values(env.settings_file, assignments, env.app_class.Args, env.profile_dirs)
    return {"app": app, "file": str(env.settings_file), "resolved": saved.as_dict()}


@router.get("/plan/{app}")
def plan(request: Request, app: str) -> dict[str, Any]:
    """The plan a run would use now (the edited plan file when there is one), and its warnings."""
    view = plan_view(request.app.state.config, env_for(request.app.state.config, app))
    return {"edited": view.edited, "file": str(view.file), "warnings": view.warnings, "loads": view.plan.loads(),
            "plan": view.plan.to_dict()}


@router.post("/plan/{app}/move")
def move(request: Request, app: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """``{"partitions": ["p1"], "slot": "127.0.0.1-0"}``: moved, validated, saved as the plan file."""
    config = request.app.state.config
    edited = move_partitions(config, env_for(config, app), [str(p) for p in body.get("partitions", [])], str(body.get("slot", "")))
    return {"assignment": edited.assignment, "loads": edited.loads()}


@router.delete("/plan/{app}")
def forget_plan(request: Request, app: str) -> dict[str, Any]:
    config = request.app.state.config
    discard(config, env_for(config, app))
    return {"edited": False}


@router.post("/run/{app}")
def run(request: Request, app: str, body: dict[str, Any] | None = Body(default=None)) -> dict[str, Any]:
    """Start a run (settings as saved, the edited plan when there is one); follow
    ``/api/jobs/{id}/events``."""
    job = start_run(request.app.state.jobs, request.app.state.config, app, mode=(body or {}).get("mode"))
    return job.summary()


@router.post("/install/{app}")
def install(request: Request, app: str) -> dict[str, Any]:
    """Install the app on every host of its worker map; follow ``/api/jobs/{id}/events`` (one
    ``host_step`` event per step of each host, ``done`` when the host is finished)."""
    return start_install(request.app.state.jobs, request.app.state.config, app).summary()


@router.get("/runs")
def runs(request: Request, app: str = "", status: str = "") -> list[dict[str, Any]]:
    records = run_store(request.app.state.config).list(safe_name(app) if app else None)
    return [{"run_id": r.run_id, "app": r.app.name, "status": r.status, "started": r.started, "duration_s": r.duration_s,
             "mode": r.mode.value, "partitions": r.totals.partitions} for r in records if not status or r.status == status]


@router.get("/runs/{app}/{run_id}")
def run_record(request: Request, app: str, run_id: str) -> dict[str, Any]:
    store = run_store(request.app.state.config)
    record = store.find(str(store.run_dir(safe_name(app), safe_name(run_id))))
    return record.model_dump(mode="json", by_alias=True)


@router.get("/steps")
def steps(request: Request) -> list[dict[str, Any]]:
    return [row.__dict__ for row in step_rows(request.app.state.config)]


@router.post("/steps")
def add(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """``{"app": "toy", "kind": "run", "id": "optional", "deps": [...]}``: a snippet step from today's settings
    (without ``deps``: after the last step)."""
    step_id = add_step(request.app.state.config, str(body.get("app")), str(body.get("kind", "run")), step_id=body.get("id"),
                       deps=None if body.get("deps") is None else [str(d) for d in body["deps"]])
    return {"id": step_id}


@router.post("/steps/{step_id}")
def edit(request: Request, step_id: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """``{"deps": [...]}`` and/or ``{"move": -1 | 1}``."""
    config = request.app.state.config
    if "deps" in body:
        set_deps(config, step_id, [str(d) for d in body["deps"]])
    if "move" in body:
        move_step(config, step_id, int(body["move"]))
    return {"steps": [row.id for row in step_rows(config)]}


@router.post("/steps-run")
def run_steps(request: Request, body: dict[str, Any] | None = Body(default=None)) -> dict[str, Any]:
    """``{}`` (all), ``{"steps": ["a"]}`` or ``{"from": "a"}``; follow ``/api/jobs/{id}/events``."""
    body = body or {}
    job = start_pipeline(request.app.state.jobs, request.app.state.config, steps=tuple(body.get("steps") or ()),
                         from_step=body.get("from"))
    return job.summary()
