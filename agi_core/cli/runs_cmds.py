"""``agi runs list|show``: the run records on a share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .options import apps_path_option, env_for, json_option
from .output import console, print_json, table

if TYPE_CHECKING:
    from ..provenance import RunRecord, RunStore

__all__ = ["runs_group"]

_LIST_FIELDS = {"run_id", "app", "status", "mode", "started", "duration_s", "totals", "error"}

_SHARE_OPTION = click.option("--share", type=click.Path(file_okay=False, path_type=Path),
                             help="The share to read (default: the app's workers_data_path, else the local default share).")


@click.group("runs")
@apps_path_option
def runs_group() -> None:
    """Read the run records on the share."""


def _store(ctx: click.Context, app: str | None, share: Path | None) -> RunStore:
    from ..paths import default_share
    from ..provenance import RunStore

    if share:
        return RunStore(share)
    if app:
        return RunStore(env_for(ctx, app).settings().share)
    return RunStore(default_share())


def _listed(record: RunRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", by_alias=True, include=_LIST_FIELDS) | {"path": record.path}


@runs_group.command("list")
@click.argument("app", required=False)
@apps_path_option
@_SHARE_OPTION
@click.option("--limit", "-n", default=20, show_default=True, help="Show at most this many runs (0: all).")
@json_option
@click.pass_context
def runs_list(ctx: click.Context, app: str | None, share: Path | None, limit: int, as_json: bool) -> None:
    """List recorded runs, newest first (of APP, or of every app on the share).

    A run whose manager died reads `abandoned`; a record that cannot be read, `unreadable`.
    """
    from .record_view import status_text

    store = _store(ctx, app, share)
    name = env_for(ctx, app).name if app else None
    records = store.list(name)[: limit or None]
    if as_json:
        print_json([_listed(r) for r in records])
        return
    if not records:
        console(stderr=True).print(f"no runs recorded under {store.root}")
        return
    table(f"runs under {store.root}", ["run", "app", "status", "mode", "started", "duration", "partitions ok/all"], (
        [r.run_id, r.app.name, status_text(r.status), f"{r.mode.value} {r.mode.letters}".strip(), r.started,
         f"{r.duration_s:.2f} s" if r.ended else "",
         f"{r.totals.ok + r.totals.cached}/{r.totals.partitions}"] for r in records))


@runs_group.command("show")
@click.argument("run")
@click.option("--app", default=None, help="Read APP's share (its workers_data_path).")
@apps_path_option
@_SHARE_OPTION
@click.option("--all", "all_partitions", is_flag=True, help="Also every partition's row, every slot and every failure.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.pass_context
def runs_show(ctx: click.Context, run: str, app: str | None, share: Path | None, all_partitions: bool, as_json: bool) -> None:
    """Show one run record. RUN is a run id, a unique prefix of one, `last`, or a record's path.

    \b
    Shown: the run's status, mode, versions and fingerprints; a summary by slot; every failure
    (the first 20 without --all) with its traceback; the 10 slowest partitions.
    """
    from .record_view import print_record

    record = _store(ctx, app, share).find(run)
    if as_json:
        print_json(record.model_dump(mode="json", by_alias=True))
        return
    print_record(record, all_partitions=all_partitions)
