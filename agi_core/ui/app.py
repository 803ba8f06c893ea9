"""`create_app(config)`: the web UI's FastAPI app; its state (config, jobs, templates) lives on it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..base.errors import AgiError
from ..base.modes import Mode
from .config import UiConfig
from .dashboard import PLOTS, no_dashboard_reason
from .jobs import Jobs
from .records import RecordCache
from .rendering import NotFound, render, seconds
from .security import TokenGuard

__all__ = ["NotFound", "create_app", "render", "seconds"]

HERE = Path(__file__).parent


def _error(request: Request, exc: AgiError) -> Response:
    if request.url.path.startswith("/files/"):
        return JSONResponse({"error": exc.message}, status_code=404)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.message, "fix": exc.fix}, status_code=400)
    if not request.headers.get("hx-request"):  # a page asked for by its URL: a whole page, with its status
        return render(request, "error.html", status_code=404 if isinstance(exc, NotFound) else 400, message=exc.message, fix=exc.fix)
    # HTMX swaps 2xx answers only: the error box replaces the panel's result
    return render(request, "_error.html", message=exc.message, fix=exc.fix)


def _favicon() -> Response:
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


def create_app(config: UiConfig) -> FastAPI:
    """The ASGI app of one UI server. Every request passes `TokenGuard` (token, CSRF, Host)."""
    from .routes import api, files, jobs, live, orchestrate, pipeline, runs

    app = FastAPI(title="agi ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.jobs = Jobs()
    app.state.records = RecordCache()  # run records read once (RUNS table, record pages)
    app.state.rates = {}  # manifest → seconds per unit of weight (plan estimates)
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.templates.env.globals["csrf"] = config.csrf
    app.state.templates.env.filters["seconds"] = seconds
    app.state.templates.env.globals["dashboard_plots"] = PLOTS
    app.state.templates.env.globals["no_dashboard_reason"] = no_dashboard_reason
    app.state.templates.env.globals["mode_letters"] = [Mode(m).letters for m in range(16)]
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_api_route("/favicon.ico", _favicon, include_in_schema=False)
    for module in (orchestrate, pipeline, live, runs, files, jobs, api):
        app.include_router(module.router)
    app.add_exception_handler(AgiError, _error)  # type: ignore[arg-type]
    app.add_middleware(TokenGuard, config=config)
    return app
