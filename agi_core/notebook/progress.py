"""`NotebookProgress`: a run's progress in a Jupyter cell, drawn from its events.

The terminal's progress bars (rich, `cli/run_view.py`) redraw with escape codes, which a notebook
shows as raw text, or need ipywidgets. This display is one output of the cell, HTML with a plain
text form, updated in place through a Jupyter display id (``update_display_data``): it works in
JupyterLab, classic notebooks, VS Code and in a notebook executed by nbclient, whose saved output
is the final state. Updates are throttled (`EVERY_S`), so 100,000 partitions are not 100,000
messages to the browser.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

from ..base.events import ClusterReady, Event, Notice, PartitionDone, Phase, RunFinished, RunStarted

__all__ = ["EVERY_S", "NotebookProgress", "progress"]

EVERY_S = 0.25  # at most this often, an update of the display while partitions finish
MAX_LINES = 20  # notices kept under the bar (the newest)


class _View:
    """What is shown: a rich display object (``text/html`` and ``text/plain``)."""

    def __init__(self, html_text: str, plain: str) -> None:
        self.html, self.plain = html_text, plain

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self.html, "text/plain": self.plain}


class NotebookProgress:
    """Pass it as ``on_event`` of `AGI.run` in a notebook cell: one bar for the run (partitions
    done of the plan, time, failures), the phase before it starts (planning, starting the
    cluster, compiling), the cluster's dashboard link, warnings and notices, and how it ended;
    an interrupted run says what it kept and how to resume it. ``display``: IPython's
    ``display`` (the default) or any function with its signature."""

    def __init__(self, *, display: Callable[..., Any] | None = None, every_s: float = EVERY_S) -> None:
        self._display = display
        self.every_s = every_s
        self._handle: Any = None
        self._title = "agi run"
        self._total = 0
        self._done = 0
        self._failed = 0
        self._started = time.time()
        self._phase = "starting"
        self._lines: list[tuple[str, str]] = []  # (kind, text)
        self._end: str | None = None
        self._shown_at = 0.0

    # -- events -------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, PartitionDone):
            self._done += 1
            self._failed += event.status == "failed"
            if time.monotonic() - self._shown_at >= self.every_s or self._done == self._total:
                self._show()
            return
        if isinstance(event, RunStarted):
            from ..base.modes import Mode

            self._title, self._total, self._phase = f"{event.app} run {event.run_id}, mode {Mode(event.mode)}", event.partitions, "running"
            self._started = time.time()
        elif isinstance(event, RunFinished):
            self._end = self._ending(event)
            self._phase = event.status
        elif isinstance(event, ClusterReady):
            link = f' <a href="{html.escape(event.dashboard)}" target="_blank">dashboard</a>' if event.dashboard else ""
            self._add("cluster", f"Dask scheduler {event.scheduler}" + (" (warm cluster)" if event.warm else ""), link)
        elif isinstance(event, Phase):  # before the run starts: what it is doing (planning, a cluster); then reducing
            if self._total and event.name != "reducing":
                return
            self._phase = f"{event.name}: {event.detail}" if event.detail and not self._total else event.name
        elif isinstance(event, Notice):
            self._add(event.level, event.text)
        else:
            return
        self._show()

    def _ending(self, event: RunFinished) -> str:
        counts = event.counts
        kept = counts.get("ok", 0) + counts.get("cached", 0)
        text = f"{event.status} in {event.duration_s:.2f} s: {kept}/{counts.get('partitions', self._total)} partitions ok"
        if counts.get("cached"):
            text += f" ({counts['cached']} from the cache)"
        if event.status == "interrupted":
            text += f"; resume it with await AGI.run(env, resume={event.run_id!r}) (computes only what did not finish)"
        return text

    def _add(self, kind: str, text: str, extra_html: str = "") -> None:
        self._lines.append((kind, html.escape(text) + extra_html))
        del self._lines[:-MAX_LINES]

    # -- drawing ------------------------------------------------------------------------------

    def view(self) -> _View:
        """The display as it is now."""
        elapsed = time.time() - self._started
        total = max(self._total, 1)
        count = f"{self._done}/{self._total} partitions" if self._total else self._phase
        failed = f", {self._failed} failed" if self._failed else ""
        status = self._end or (f"{count}{failed}, {elapsed:.1f} s" + (f" ({self._phase})" if self._total and self._phase != "running" else ""))
        colour = {"ok": "#2e7d32", "failed": "#c62828", "interrupted": "#ef6c00"}.get(self._phase, "#1565c0")
        bar = (f'<progress value="{self._done}" max="{total}" style="width:24em;vertical-align:middle"></progress> '
               if self._total else "")
        lines = "".join(f'<div style="color:{"#b26a00" if kind == "warning" else "inherit"}">'
                        f'{"warning: " if kind == "warning" else ""}{text}</div>' for kind, text in self._lines)
        body = (f'<div style="font-family:monospace"><b>{html.escape(self._title)}</b><br>{bar}'
                f'<span style="color:{colour}">{html.escape(status)}</span>{lines}</div>')
        plain = "\n".join([f"{self._title}: {status}",
                           *(("warning: " if kind == "warning" else "") + html.unescape(_strip_tags(text)) for kind, text in self._lines)])
        return _View(body, plain)

    def _show(self) -> None:
        self._shown_at = time.monotonic()
        if self._handle is None:
            display = self._display
            if display is None:
                from IPython.display import display
            self._handle = display(self.view(), display_id=True)
        elif hasattr(self._handle, "update"):
            self._handle.update(self.view())


def _strip_tags(text: str) -> str:
    """The text of a line without the link tags it may hold."""
    import re

    return re.sub(r"<[^>]+>", "", text)


def progress(*, display: Callable[..., Any] | None = None, every_s: float = EVERY_S) -> NotebookProgress:
    """A new `NotebookProgress` (one per run): ``await AGI.run(env, on_event=progress())``."""
    return NotebookProgress(display=display, every_s=every_s)
