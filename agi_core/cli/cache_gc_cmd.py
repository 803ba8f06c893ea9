"""``agi cache gc``: remove old or least recently used cache entries and the leftovers of unfinished
writes, saying what went (or, with ``--dry-run``, what would go).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from .cache_options import DURATION, SHARE_OPTION, SIZE, ago, app_name, share_for
from .options import apps_path_option, json_option
from .output import console, print_json, table

if TYPE_CHECKING:
    from ..cache.maintenance import GcPlan

__all__ = ["cache_gc"]


@click.command("gc")
@click.argument("app", required=False)
@apps_path_option
@SHARE_OPTION
@click.option("--older-than", type=DURATION, default=None, help="Remove entries unused for longer than this (30m, 12h, 7d).")
@click.option("--max-size", type=SIZE, default=None,
              help="Then remove the least recently used entries until the rest fits in this (500M, 2G, 2GiB: "
                   "powers of 1024; 500MB, 2GB: powers of 1000; APP's entries, or every app's together).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@json_option
@click.pass_context
def cache_gc(ctx: click.Context, app: str | None, share: Path | None, older_than: float | None, max_size: int | None,
             dry_run: bool, as_json: bool) -> None:
    """Remove old or least recently used cache entries, of APP or of every app.

    \b
    Never removed: an entry whose key a running run holds (its record reads `running`; a dead
    manager's run reads `abandoned` and holds nothing), nor one used after gc looked at it.
    Also removed: leftovers older than an hour (.tmp-* files of an unfinished write, packs
    without an index, output folders that no entry names), and at once the .tmp-* files of a
    writer that ran on this host and is gone (killed mid-write). Entries are removed by rewriting
    their packs; single-file entries of the older layout are moved into a pack, and runs of
    small packs are merged. Without --older-than and --max-size, only the leftovers go.
    """
    from ..cache.maintenance import apply_gc, cache_apps, collect_gc

    root = share_for(ctx, app, share)
    apps = [app_name(ctx, app, share)] if app else cache_apps(root)
    plan = collect_gc(root, apps, older_than=older_than, max_size=max_size)
    done = plan if dry_run else apply_gc(root, plan)
    if as_json:
        print_json({"share": str(root), "apps": apps, "dry_run": dry_run, **done.to_json()})
        return
    _print_gc(root, apps, done, dry_run)


def _print_gc(root: Path, apps: list[str], done: GcPlan, dry_run: bool) -> None:
    from ..base.quantities import format_size

    out = console()
    verb = "would remove" if dry_run else "removed"
    if not apps:
        out.print(f"no cache under {escape(str(root / 'cache'))}")
        return
    if done.older_than is None and done.max_size is None:
        out.print("no --older-than or --max-size: only leftovers (old temporary files, unnamed output folders) are collected")
    if done.remove:
        table(f"{verb} {len(done.remove)} entr{'y' if len(done.remove) == 1 else 'ies'}",
              ["app", "key", "partition", "size", "last used", "why"],
              ([item.app, item.key[:12], item.partition, format_size(item.size), ago(item.used), why] for item, why in done.remove))
    for app, path, size in done.leftovers:
        out.print(f"{verb} leftover {escape(str(path))} ({format_size(size)})")
    if done.protected:
        runs = sorted({done.live_runs.get(item.key, "?") for item in done.protected})
        out.print(f"[yellow]kept {len(done.protected)} entr{'y' if len(done.protected) == 1 else 'ies'} "
                  f"({format_size(sum(i.size for i in done.protected))}) that running run(s) {', '.join(runs[:5])} hold[/]")
    kept = len(done.kept) + len(done.protected)
    out.print(f"{verb} {len(done.remove)} entries and {len(done.leftovers)} leftovers: {format_size(done.freed)} "
              f"{'would be ' if dry_run else ''}freed; {kept} entries ({format_size(done.kept_size)}) kept")
    if done.max_size is not None and done.kept_size > done.max_size:
        out.print(f"[yellow]the cache is still over --max-size {format_size(done.max_size)}: running runs hold the rest[/]")
