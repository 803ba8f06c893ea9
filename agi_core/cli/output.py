"""Printing for the CLI: rich tables for people, JSON for scripts, errors with their fix."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["console", "print_error", "print_json", "table"]


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output has no terminal width; a wide fixed one keeps ids and paths whole for grep.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if stream.isatty() else 200)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    view = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        view.add_column(column, no_wrap=column in ("run", "id", "app", "slot", "started"))
    for row in rows:
        view.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(view)


def print_error(message: str, fix: str | None) -> None:
    from rich.markup import escape

    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(message)}")
    if fix:
        err.print(f"[bold]fix:[/] {escape(fix)}")
