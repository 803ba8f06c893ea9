"""The web UI (`agi ui`): ORCHESTRATE, PIPELINE and RUNS pages and a small JSON API.

Served on loopback with a token, offline (HTMX and the CSS ship in ``static/``), live through
server-sent events made from the same typed events the CLI renders. FastAPI, Jinja2 and uvicorn
are the optional ``ui`` extra: nothing here is imported by ``import agi_core`` or ``agi run``.

Build the ASGI app with `create_app(UiConfig(...))`; the state lives on that app instance.
"""

from __future__ import annotations

from .config import UiConfig

__all__ = ["UiConfig", "create_app"]


def create_app(config: UiConfig):  # -> fastapi.FastAPI
    """The web UI's ASGI app for ``config`` (see `agi_core.ui.app.create_app`)."""
    from .app import create_app as _create

    return _create(config)
