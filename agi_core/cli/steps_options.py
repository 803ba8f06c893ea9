"""Options the ``agi steps`` commands share: the pipeline file and ``--deps``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["FILE_ENV", "deps_list", "deps_option", "file_option"]

F = TypeVar("F", bound=Callable[..., Any])
FILE_ENV = "AGI_STEPS_FILE"


def file_option(function: F) -> F:
    return click.option("--file", "-f", "file", type=click.Path(dir_okay=False, path_type=Path), envvar=FILE_ENV,
                        default="lab_steps.toml", show_default=True,
                        help=f"The pipeline file (or set {FILE_ENV}).")(function)


def deps_list(values: tuple[str, ...]) -> list[str]:
    """``--deps a,b --deps c`` → [a, b, c]."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def deps_option(function: F) -> F:
    return click.option("--deps", "-d", multiple=True, metavar="IDS",
                        help="Steps that must succeed first (comma-separated or repeated). Default: none, so the step "
                             "may run at the same time as the others.")(function)
