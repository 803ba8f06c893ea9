"""What pages share: `render` (a template with the page context), `NotFound`, `seconds`.

Their own module, below `ui.app` and `ui.routes`, so that routes never import the app that mounts them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ..base.errors import AgiError

__all__ = ["NotFound", "render", "seconds"]


class NotFound(AgiError):
    """What a page's URL names does not exist (an app, a run): its page answers 404."""


def seconds(value: float) -> str:
    """A duration as people read it: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if value < 10:
        return f"{value:.2g} s" if value < 1 else f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A template rendered with the page context every template may use."""
    app = request.app
    return app.state.templates.TemplateResponse(request, template, {"config": app.state.config, **context},
                                                status_code=status_code)
