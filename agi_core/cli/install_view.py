"""`agi install`'s live table: one row per host and its current step, drawn from `HostStep` events.

The install core only emits events (see `agi_core.base.events`); this view is one sink for them, so a
web UI or a log can show the same install without the core knowing how.
"""

from __future__ import annotations

import time
from typing import Any

from ..base.events import Event, HostOutput, HostStep

__all__ = ["InstallView", "print_host_output"]


def print_host_output(event: Event, console: Any = None) -> None:
    """``agi -v install`` without the live table: what each host's uv and Cython build print."""
    if isinstance(event, HostOutput):
        from rich.console import Console
        from rich.markup import escape

        (console or Console(stderr=True)).print(f"[dim]{escape(event.host)} {escape(event.step)}[/] {escape(event.line)}", highlight=False, soft_wrap=True)


class InstallView:
    """A rich live table on stderr while an install runs; pass the view itself as ``on_event``.

    Rows appear in the order hosts are first named; a host's row stops its clock and spinner on
    its ``done`` step. Events other than `HostStep` are ignored. The table is transient: the
    final per-host report is printed by the command once the install has finished.
    """

    def __init__(self, *, console: Any = None, output: bool = False) -> None:
        self._output = output  # `agi -v install`: each host's command output above the table
        self._steps: dict[str, HostStep] = {}
        self._started: dict[str, float] = {}
        self._console = console
        self._live: Any = None

    def __enter__(self) -> InstallView:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(self._render(), console=self._console or Console(stderr=True), refresh_per_second=8, transient=True)
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __call__(self, event: Event) -> None:
        if self._output and isinstance(event, HostOutput):
            print_host_output(event, self._live.console if self._live is not None else self._console)
        if not isinstance(event, HostStep):
            return
        self._started.setdefault(event.host, time.perf_counter())
        self._steps[event.host] = event
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table(title="install", title_justify="left", show_edge=False)
        table.add_column("host")
        table.add_column("step")
        table.add_column("time", justify="right")
        for host, event in self._steps.items():
            if event.done:
                table.add_row(host, f"[red]{event.step}[/]" if event.failed else event.step, "")
            else:
                table.add_row(host, Spinner("dots", text=event.step), f"{time.perf_counter() - self._started[host]:.1f} s")
        return table
