"""`render`: a template with the page context every template may use.

Its own module, below `ui.app` and `ui.routes`, so that routes never import the app that mounts them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

__all__ = ["render"]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A template rendered with the page context every template may use."""
    app = request.app
    return app.state.templates.TemplateResponse(request, template, {"config": app.state.config, **context},
                                                status_code=status_code)
