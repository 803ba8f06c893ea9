"""Generated snippets: the Python of one `AGI.install`, `AGI.get_distrib` or `AGI.run` call.

`render_snippet` turns a resolved `RunRequest` into a script (a pure function; `agi snippet`
is a thin wrapper around it). The script calls `check_snippet` first, which says when the app's
settings changed since the snippet was generated (a warning; an error with
``AGI_STRICT_SNIPPETS=1``), and ends with `run_snippet`, which runs it as a script or in a
notebook cell. See docs/snippets.md and docs/notebooks.md.
"""

from __future__ import annotations

from .check import STRICT_ENV, StaleSnippetError, check_snippet, current_hash
from .render import KINDS, SNIPPET_API, regenerate_command, render_snippet
from .running import run_snippet

__all__ = [
    "KINDS",
    "SNIPPET_API",
    "STRICT_ENV",
    "StaleSnippetError",
    "check_snippet",
    "current_hash",
    "regenerate_command",
    "render_snippet",
    "run_snippet",
]
