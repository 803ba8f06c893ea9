"""`create_app(config)`: the web UI's FastAPI app; its state (config, jobs, templates) lives on it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..errors import AgiError
from .config import UiConfig
from .jobs import Jobs
from .rendering import render
from .security import TokenGuard

__all__ = ["create_app", "render"]

HERE = Path(__file__).parent


def _error(request: Request, exc: AgiError) -> Response:
    if request.url.path.startswith("/files/"):
        return JSONResponse({"error": exc.message}, status_code=404)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.message, "fix": exc.fix}, status_code=400)
    # HTMX swaps 2xx answers only: the error box replaces the panel's result
    return render(request, "_error.html", message=exc.message, fix=exc.fix)


def create_app(config: UiConfig) -> FastAPI:
    """The ASGI app of one UI server. Every request passes `TokenGuard` (token, CSRF, Host)."""
    from .routes import api, files, jobs, orchestrate, pipeline, runs

    app = FastAPI(title="agi ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.jobs = Jobs()
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.templates.env.globals["csrf"] = config.csrf
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (orchestrate, pipeline, runs, files, jobs, api):
        app.include_router(module.router)
    app.add_exception_handler(AgiError, _error)  # type: ignore[arg-type]
    app.add_middleware(TokenGuard, config=config)
    return app
