"""The options and wording the cache and runs commands share: ``--share`` and the share it means,
``--older-than`` (`DURATION`) and ``--max-size`` (`SIZE`), times for people (`when`, `ago`), and
the line about unfinished cache writes.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .options import env_for

if TYPE_CHECKING:
    pass

__all__ = ["DURATION", "SHARE_OPTION", "SIZE", "access_for", "ago", "app_name", "share_for", "unfinished_line", "when"]


class _Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from ..base.quantities import parse_duration

        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Size(click.ParamType):
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from ..base.quantities import parse_size

        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()  # 30m, 12h, 7d
SIZE = _Size()  # 500M, 2G
SHARE_OPTION = click.option("--share", type=click.Path(file_okay=False, path_type=Path),
                            help="The share to use (default: the app's workers_data_path, else the local default share).")


def share_for(ctx: click.Context, app: str | None, share: Path | None) -> Path:
    """``--share``, else APP's share (its workers_data_path), else the local default share."""
    from ..base.paths import default_share

    if share:
        return share
    if app:
        return Path(env_for(ctx, app).settings().share)
    return default_share()


def access_for(ctx: click.Context, app: str | None) -> Any:
    """APP's ``[cluster.share] group_access`` (`share_access.ShareAccess`); the default when APP is not found here."""
    from ..base.errors import AgiError
    from ..base.share_access import ShareAccess

    try:
        return ShareAccess.of(env_for(ctx, app).settings().cluster.share.group_access) if app else ShareAccess()
    except AgiError:
        return ShareAccess()


def app_name(ctx: click.Context, app: str, share: Path | None) -> str:
    """The app's name: with --share the app need not be found in the apps folders."""
    return app.removesuffix("_project") if share else env_for(ctx, app).name


def when(timestamp: float | None) -> str:
    """A local time for people: ``2026-11-23 19:10:26``."""
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


def ago(timestamp: float | None, now: float | None = None) -> str:
    """How long ago, for people: ``40s ago``, ``12m ago``, ``3.5h ago``, ``2d ago``."""
    if not timestamp:
        return "-"
    seconds = max(0.0, (time.time() if now is None else now) - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}".removesuffix(".0") + f"{unit} ago"
    return f"{seconds:.0f}s ago"


def unfinished_line(unfinished: list[Any]) -> str:
    """``N unfinished writes (SIZE): …`` for `agi cache list APP` and `show` (`unfinished_writes`)."""
    from ..base.quantities import format_size

    gone = [u for u in unfinished if u.alive is False]
    size = format_size(sum(u.size for u in unfinished))
    parts = []
    if gone:
        parts.append(f"{len(gone)} left by a writer that is gone ({format_size(sum(u.size for u in gone))}; "
                     "`agi cache gc` removes them)")
    running = sum(u.alive is True for u in unfinished)
    if running:
        parts.append(f"{running} in progress")
    unknown = len(unfinished) - len(gone) - running
    if unknown:
        parts.append(f"{unknown} by a writer on another host or of an older agi_core (`agi cache gc` removes them after an hour)")
    count = len(unfinished)
    return f"{count} unfinished write{'s' if count != 1 else ''} ({size}): " + ", ".join(parts)
