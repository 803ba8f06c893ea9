"""The UI's guard: a token on every request, same-origin POSTs with a CSRF token, no DNS rebinding.

- ``?token=…`` on a GET sets an HttpOnly, SameSite=Strict cookie and redirects to the same URL
  without it (the token leaves the address bar and the history);
- the cookie, or ``Authorization: Bearer TOKEN`` (the JSON API), is required on every request;
- a cookie-authenticated POST/PUT/DELETE must come from this origin (``Sec-Fetch-Site``,
  ``Origin``) and carry the ``X-CSRF-Token`` header the pages send;
- the ``Host`` header must be the address served (a DNS-rebinding page cannot talk to it).
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlencode

from .config import UiConfig, is_loopback

__all__ = ["COOKIE", "CSRF_HEADER", "TokenGuard"]

COOKIE = "agi_ui_token"
CSRF_HEADER = "x-csrf-token"
_SAFE = {"GET", "HEAD", "OPTIONS"}


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class TokenGuard:
    """Pure ASGI middleware (streams pass through untouched) enforcing the rules above."""

    def __init__(self, app: Any, config: UiConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, RedirectResponse

        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            status, text = refusal
            await PlainTextResponse(text, status_code=status)(scope, receive, send)
            return
        token = request.query_params.get("token")
        if token is not None and request.method == "GET":
            query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), status_code=303)
            response.set_cookie(COOKIE, self.config.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Any) -> tuple[int, str] | None:
        """Why ``request`` is refused (status, text), or None."""
        host = request.url.hostname or ""
        if not self.config.allow_remote and not (host in ("localhost", "127.0.0.1", "::1") or is_loopback(host or "invalid")):
            return 421, f"unexpected Host {host!r}: open the URL that `agi ui` printed"
        header = request.headers.get("authorization", "")
        by_header = header.startswith("Bearer ") and _same(header.removeprefix("Bearer "), self.config.token)
        by_query = request.method == "GET" and _same(request.query_params.get("token"), self.config.token)
        by_cookie = _same(request.cookies.get(COOKIE), self.config.token)
        if not (by_header or by_query or by_cookie):
            return 401, "this agi ui needs its token: open the URL that `agi ui` printed (…/?token=…)"
        if request.method not in _SAFE and not by_header:
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, "cross-site request refused"
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
                return 403, f"request from origin {origin} refused"
            if not _same(request.headers.get(CSRF_HEADER), self.config.csrf):
                return 403, "missing or wrong CSRF token: reload the page"
        return None
