"""The ORCHESTRATE page: app picker, settings editor, install, distribution, run, snippets."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ...base.errors import AgiError
from ..actions import start_install, start_run
from ..apps import app_names, env_for
from ..plans import discard, move_partitions, plan_view, slot_page
from ..rendering import NotFound, render
from ..settings_form import SaveOutcome, form_fields, save_form, worker_rows
from ..steps import add_step
from .live import live_views

__all__ = ["router"]

router = APIRouter()


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/orchestrate", status_code=303)


def _settings_panel(request: Request, app: str, outcome: SaveOutcome | None = None, form: dict | None = None) -> Response:
    env = env_for(request.app.state.config, app)
    fields = form_fields(env)
    if outcome is not None:
        for field in fields:
            field.error = outcome.errors.get(field.key)
            if field.error and form is not None and field.key in form:
                field.value = form[field.key]  # show what was typed, beside its error
    other = {k: v for k, v in (outcome.errors if outcome else {}).items() if k not in {f.key for f in fields}}
    return render(request, "_settings.html", app=app, env=env, fields=fields, workers=worker_rows(env), outcome=outcome,
                  other_errors=other)


@router.get("/orchestrate")
def orchestrate(request: Request, app: str | None = None) -> Response:
    config = request.app.state.config
    names = app_names(config)
    chosen = app or config.app or (names[0] if names else None)
    if chosen is not None and chosen not in names:
        raise NotFound(f"unknown app {chosen!r}", fix=f"choose one of: {', '.join(names)}")
    env = env_for(config, chosen) if chosen else None
    try:  # a settings file that does not validate is shown as an error in its panel, not as a blank page
        fields, workers, broken = (form_fields(env), worker_rows(env), None) if env else ([], [], None)
    except AgiError as exc:
        fields, workers, broken = [], [], exc
    return render(request, "orchestrate.html", page="orchestrate", apps=names, app=chosen, env=env, fields=fields,
                  workers=workers, outcome=None, other_errors={}, broken=broken, **live_views(request, chosen))


@router.get("/orchestrate/{app}/settings")
def settings_panel(request: Request, app: str) -> Response:
    return _settings_panel(request, app)


@router.post("/orchestrate/{app}/settings")
async def save_settings(request: Request, app: str) -> Response:
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if not k.startswith("worker_")}
    hosts, counts = form.getlist("worker_host"), form.getlist("worker_count")
    workers = list(zip(map(str, hosts), map(str, counts), strict=False)) if "workers_present" in form else None
    env = env_for(request.app.state.config, app)
    outcome = save_form(env, values, workers)
    response = _settings_panel(request, app, outcome, values)
    if outcome.saved:  # the plan and snippet panels reload (hx-trigger="settings-saved from:body")
        response.headers["HX-Trigger"] = "settings-saved"
    return response


@router.get("/orchestrate/{app}/mode")
def mode(request: Request, app: str) -> Response:
    """The mode hint of the form's toggles and worker map as they are now (saved or not)."""
    from ...base.modes import Mode
    from ...kernels.kinds import compiled_kinds
    from ..mode_hint import mode_hint

    query = request.query_params
    rapids = {"on": True, "require": "require"}.get(query.get("cluster.rapids", "off"), False)
    value = (Mode.POOL * ("cluster.pool" in query) | Mode.CYTHON * ("cluster.cython" in query)
             | Mode.CLUSTER * ("cluster.cluster_enabled" in query) | Mode.RAPIDS * bool(rapids))
    workers: dict[str, int] = {}
    for host, count in zip(query.getlist("worker_host"), query.getlist("worker_count"), strict=False):
        if host.strip() and count.strip().isdigit():
            workers[host.strip()] = int(count)
    compiled = query.get("cluster.compiled", "cython")
    compiled = compiled if compiled in compiled_kinds() else "cython"
    return render(request, "_notice_text.html", text=mode_hint(Mode(value), workers, rapids, compiled=compiled))


@router.post("/orchestrate/{app}/install")
def install(request: Request, app: str) -> Response:
    job = start_install(request.app.state.jobs, request.app.state.config, app)
    return render(request, "_job.html", job=job)


@router.get("/orchestrate/{app}/plan")
def plan_panel(request: Request, app: str, message: str = "") -> Response:
    view = plan_view(request.app.state.config, env_for(request.app.state.config, app))
    return render(request, "_plan.html", app=app, view=view, message=message, rate=_rate(request, app))


def _rate(request: Request, app: str):
    """Seconds per unit of weight, from the app's newest successful run (None before one)."""
    from ..estimates import seconds_per_weight
    from ..files import run_store, safe_name

    state = request.app.state
    return seconds_per_weight(run_store(state.config), safe_name(app), state.rates)


@router.get("/orchestrate/{app}/plan/slot")
def plan_slot(request: Request, app: str, slot: str, start: int = 0) -> Response:
    view = plan_view(request.app.state.config, env_for(request.app.state.config, app))
    rows, following = slot_page(view.plan, slot, start)
    return render(request, "_slot_rows.html", app=app, slot=slot, rows=rows, following=following)


@router.post("/orchestrate/{app}/plan/move")
async def plan_move(request: Request, app: str) -> Response:
    form = await request.form()
    config = request.app.state.config
    try:
        move_partitions(config, env_for(config, app), [str(p) for p in form.getlist("pid")], str(form.get("slot", "")))
    except AgiError as exc:
        view = plan_view(config, env_for(config, app))
        return render(request, "_plan.html", app=app, view=view, message="", error=exc, rate=_rate(request, app))
    moved = len(form.getlist("pid"))
    return plan_panel(request, app, message=f"moved {moved} partition(s) to {form.get('slot')}; saved, "
                                             "the next run uses this plan")


@router.post("/orchestrate/{app}/plan/discard")
def plan_discard(request: Request, app: str) -> Response:
    config = request.app.state.config
    discard(config, env_for(config, app))
    return plan_panel(request, app, message="edits discarded: runs plan afresh")


@router.post("/orchestrate/{app}/run")
def run(request: Request, app: str) -> Response:
    running = request.app.state.jobs.running("run", app)
    if running is not None:  # a double click, or Run in another tab: show the run that runs
        return render(request, "_job.html", job=running, again=True)
    job = start_run(request.app.state.jobs, request.app.state.config, app)
    return render(request, "_job.html", job=job)


@router.post("/orchestrate/{app}/compare")
async def compare(request: Request, app: str) -> Response:
    """Run the app in each ticked mode, one after the other, then show wall times and speed-ups."""
    from ..compare import parse_modes, start_compare

    form = await request.form()
    jobs = request.app.state.jobs
    running = jobs.running("compare", app) or jobs.running("run", app)
    if running is not None:
        return render(request, "_job.html", job=running, again=True)
    job = start_compare(jobs, request.app.state.config, app, parse_modes([str(m) for m in form.getlist("mode")]))
    return render(request, "_job.html", job=job)


@router.get("/orchestrate/{app}/snippet")
def snippet(request: Request, app: str, kind: str = "run") -> Response:
    from ...run import resolve
    from ...snippets import render_snippet

    config = request.app.state.config
    env = env_for(config, app)
    override = config.share_override()
    request_ = resolve(env, cluster=override or None)
    assignments = [f"cluster.workers_data_path={json.dumps(v)}" for v in override.values()]
    code = render_snippet(kind, request_, env, assignments=assignments)
    return render(request, "_snippet.html", app=app, kind=kind, code=code)


@router.post("/orchestrate/{app}/snippet/step")
async def snippet_step(request: Request, app: str) -> Response:
    form = await request.form()
    kind = str(form.get("kind", "run"))
    step_id = add_step(request.app.state.config, app, kind, step_id=str(form.get("step_id") or "") or None)
    return render(request, "_notice.html", text=f"added step {step_id!r} to {request.app.state.config.steps_file.name}",
                  link=("/pipeline", "open the pipeline"))
