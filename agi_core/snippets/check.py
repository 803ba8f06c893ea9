"""`check_snippet`: has the app's settings changed since this snippet was generated?

A snippet pins every resolved value in its `AGI.*` call, so resolving *that* call again would
hide any change to the settings file. What the snippet's header hash covers instead is the
settings file + profile with the overrides the snippet was generated with (``--set``), exactly
what `resolve()` hashes for those overrides (`RunRequest.settings_hash`). `check_snippet`
resolves the same overrides against today's files and compares.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from ..base.errors import SettingsError

if TYPE_CHECKING:
    from ..app.env import AgiEnv

__all__ = ["STRICT_ENV", "StaleSnippetError", "check_snippet", "current_hash"]

#: set to 1 to make a stale snippet an error (nothing runs) instead of a warning
STRICT_ENV = "AGI_STRICT_SNIPPETS"
_KNOWN_APIS = ("agi.snippet.v1",)


class StaleSnippetError(SettingsError):
    """The settings changed since the snippet was generated, and stale snippets are errors."""


def current_hash(env: AgiEnv, overrides: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(settings hash, settings file) that `resolve()` computes today for ``overrides``
    (``{"args": {...}, "cluster": {...}}``: the ``--set`` overrides the snippet was made with)."""
    from ..run import resolve

    overrides = overrides or {}
    request = resolve(env, args=dict(overrides.get("args") or {}), cluster=dict(overrides.get("cluster") or {}) or None)
    return request.settings_hash, request.settings_file


def check_snippet(
    env: AgiEnv, settings_hash: str, *, api: str = "agi.snippet.v1", overrides: Mapping[str, Any] | None = None,
    regenerate: str | None = None, strict: bool | None = None, stream: TextIO | None = None,
) -> bool:
    """True when the settings still hash to ``settings_hash``. Otherwise warn on ``stream``
    (stderr), or raise `StaleSnippetError` when ``strict`` (default: ``AGI_STRICT_SNIPPETS=1``).

    >>> from agi_core import AgiEnv
    >>> env = AgiEnv(app="mandelbrot")
    >>> check_snippet(env, current_hash(env)[0])
    True
    >>> import io; err = io.StringIO()
    >>> check_snippet(env, "0" * 64, strict=False, stream=err), "settings changed" in err.getvalue()
    (False, True)
    """
    if api not in _KNOWN_APIS:
        raise SettingsError(f"snippet API {api!r} is not known to this agi_core (it knows {', '.join(_KNOWN_APIS)})",
                            fix=f"regenerate the snippet: {regenerate}" if regenerate else "regenerate the snippet with `agi snippet`")
    now, settings_file = current_hash(env, overrides)
    if now == settings_hash:
        return True
    message = (f"settings changed since this snippet was generated: {settings_file} "
               f"hashed {settings_hash} then, {now} now")
    fix = f"regenerate the snippet: {regenerate}" if regenerate else f"regenerate the snippet with `agi snippet {env.name} ...`"
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if strict:
        raise StaleSnippetError(message + f" ({STRICT_ENV} is set: nothing was run)", fix=fix)
    print(f"warning: {message}\n  fix: {fix} (set {STRICT_ENV}=1 to make this an error)", file=stream or sys.stderr, flush=True)
    return False
