"""Printing for the CLI: rich tables for people, JSON for scripts, errors with their fix."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["console", "escape", "lines_console", "print_error", "print_json", "short_time", "table"]


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output has no terminal width; a wide fixed one keeps ids and paths whole for grep,
    # unless COLUMNS says how wide (what a test or a narrow pager asks for).
    width = None if stream.isatty() or os.environ.get("COLUMNS", "").isdigit() else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


#: rich's markup tags (``rich.markup.RE_TAGS``): ``[bold red]``, ``[/]``, ``[link=…]``; ``\\[`` escapes one
_TAG = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")
_ESCAPE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape(text: str) -> str:
    """`rich.markup.escape` without importing rich: ``[red]`` in ``text`` prints as it is.

    >>> escape("[cluster.dask] port")
    '\\\\[cluster.dask] port'
    """
    text = _ESCAPE.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def plain(markup: str) -> str:
    """What rich prints of ``markup`` on a stream that is no terminal: the text, tags removed.

    >>> plain("[bold green]ok[/]  " + escape("[cluster] x"))
    'ok  [cluster] x'
    """
    out, position = [], 0
    for match in _TAG.finditer(markup):
        full, escapes, _ = match.groups()
        out.append(markup[position:match.start()])
        backslashes, escaped = divmod(len(escapes), 2)
        out.append("\\" * backslashes + (full[len(escapes):] if escaped else ""))
        position = match.end()
    out.append(markup[position:])
    return "".join(out)


class _Lines:
    """A console for lines of markup: on a stream that is no terminal (a pipe, a file, a test) it
    writes them without loading rich (tens of milliseconds of every `agi run`); anything else
    goes to rich's console."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._rich: Any = None

    def print(self, *objects: Any, **options: Any) -> None:
        stream = sys.stderr if self._stderr else sys.stdout
        if options or not all(isinstance(o, str) for o in objects) or stream.isatty() or os.environ.get("FORCE_COLOR"):
            if self._rich is None:
                self._rich = console(self._stderr)
            self._rich.print(*objects, **options)
            return
        stream.write(plain(" ".join(objects)) + "\n")


def lines_console(stderr: bool = False) -> Any:
    """`console` for commands that print only lines of markup (`agi run`'s outcome): rich is loaded
    only when the stream is a terminal."""
    return _Lines(stderr)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")


#: columns of free text (paths, messages, lists): they wrap when the terminal is narrow, so the short
#: columns beside them (ids, statuses, modes, durations, counts) always stay whole
_FREE_TEXT = frozenset({"description", "path", "value", "detail", "fix", "why", "outputs", "deps", "selection",
                        "steps", "files read, not declared", "setting", "what", "args", "error", "roles", "uploaded", "gpu"})
#: a column wider than this (a path, an address list) may wrap too, whatever its name
_LONG = 28
#: the narrowest a wrapping column gets, so it never shrinks to nothing
_MIN_FREE = 8


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a table that stays readable at any width (80 columns included).

    Short columns never wrap: each keeps its widest value whole. Free-text and long columns take
    what width is left, folding their text (never below `_MIN_FREE`). A table wider than the terminal
    drops its borders (two spaces between columns instead of ` │ `) before it folds anything.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max([Text.from_markup(column).cell_len] + [_cell_width(row[i]) for row in cells if i < len(row)])
              for i, column in enumerate(columns)]
    free = [column in _FREE_TEXT or width > _LONG for column, width in zip(columns, widths)]
    out = console()
    boxed = sum(widths) + 3 * len(widths) + 1 <= out.width
    compact = {} if boxed else {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "collapse_padding": True}
    view = Table(title=title, title_justify="left", header_style="bold", **compact)
    for column, width, wraps in zip(columns, widths, free):
        if wraps:
            view.add_column(column, min_width=min(width, _MIN_FREE), overflow="fold")
        else:
            view.add_column(column, no_wrap=True, min_width=width)
    for row in cells:
        view.add_row(*row)
    out.print(view)


def _cell_width(cell: str) -> int:
    """The width of a cell's longest line, markup removed."""
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return max((Text.from_markup(line).cell_len for line in cell.splitlines()), default=0)
    except MarkupError:  # text that only looks like markup: rich prints it as it is
        return max((len(line) for line in cell.splitlines()), default=0)


def short_time(stamp: str | None) -> str:
    """An ISO timestamp as a table shows it: local ``MM-DD HH:MM`` this year, ``YYYY-MM-DD`` before.

    >>> short_time(None), short_time("not a time")
    ('', 'not a time')
    """
    from datetime import datetime

    if not stamp:
        return ""
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    when = when.astimezone() if when.tzinfo else when
    return when.strftime("%m-%d %H:%M" if when.year == datetime.now().year else "%Y-%m-%d")


def print_error(message: str, fix: str | None) -> None:
    from rich.markup import escape

    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(message)}")
    if fix:
        err.print(f"[bold]fix:[/] {escape(fix)}")
