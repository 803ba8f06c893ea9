"""``agi runs list|show|prune``: the run records on a share; ``show --why`` explains a partition's
cache key, ``show --dump-keys`` prints what each key was made from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cache_options import DURATION
from .options import apps_path_option, env_for, json_option
from .output import console, print_json, short_time, table
from .runs_bundle_cmds import runs_export, runs_import, runs_verify
from .runs_options import RUNS_SHARE_OPTION, run_store

if TYPE_CHECKING:
    from ..provenance import RunRecord

__all__ = ["runs_group"]

_LIST_FIELDS = {"run_id", "app", "status", "mode", "started", "duration_s", "totals", "error"}


@click.group("runs")
@apps_path_option
def runs_group() -> None:
    """Read the run records on the share: list, show (--why), report; export, verify and import bundles; prune old runs."""


def _listed(record: RunRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", by_alias=True, include=_LIST_FIELDS) | {"path": record.path}


@runs_group.command("list")
@click.argument("app", required=False)
@apps_path_option
@RUNS_SHARE_OPTION
@click.option("--limit", "-n", default=20, show_default=True, help="Show at most this many runs (0: all).")
@json_option
@click.pass_context
def runs_list(ctx: click.Context, app: str | None, share: Path | None, limit: int, as_json: bool) -> None:
    """List recorded runs, newest first (of APP, or of every app on the share).

    A run whose manager died reads `abandoned`; a record that cannot be read, `unreadable`.
    """
    from .record_view import status_text

    store = run_store(ctx, app, share)
    name = env_for(ctx, app).name if app else None
    records = store.list(name)[: limit or None]
    if as_json:
        print_json([_listed(r) for r in records])
        return
    if not records:
        console(stderr=True).print(f"no runs recorded under {store.root}")
        return
    table(f"runs under {store.root}", ["run", "app", "status", "mode", "started", "duration", "ok/all"], (
        [r.run_id, r.app.name, status_text(r.status), f"{r.mode.value} {r.mode.letters}".strip(), short_time(r.started),
         f"{r.duration_s:.2f} s" if r.ended else "",
         f"{r.totals.ok + r.totals.cached}/{r.totals.partitions}"] for r in records))


@runs_group.command("show")
@click.argument("run")
@click.option("--app", default=None, help="Read APP's share (its workers_data_path).")
@apps_path_option
@RUNS_SHARE_OPTION
@click.option("--all", "all_partitions", is_flag=True, help="Also every partition's row, every slot and every failure.")
@click.option("--why", "why", metavar="ID", default=None,
              help="Why partition ID was computed in RUN (or taken from the cache): what changed in its cache key "
                   "since the latest earlier run that had it, or why an unchanged key was computed anyway.")
@click.option("--dump-keys", is_flag=True,
              help="Print what every partition's cache key (only ID's, with --why) was made from: the args it reads "
                   "with their values, its payload fingerprint, its dependencies' keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON (with --why / --dump-keys: their data).")
@click.pass_context
def runs_show(ctx: click.Context, run: str, app: str | None, share: Path | None, all_partitions: bool, why: str | None,
              dump_keys: bool, as_json: bool) -> None:
    """Show one run record. RUN is a run id, a unique prefix of one, `last`, or a record's path.

    \b
    Shown: the run's status, mode, versions and fingerprints; a summary by slot; every failure
    (the first 20 without --all) with its traceback; the 10 slowest partitions.
    \b
    agi runs show last --why p3      why p3 was computed (or was a hit) in the last run
    agi runs show last --dump-keys   the parts of every partition's cache key
    """
    from .record_view import print_key_dump, print_record, print_why
    from .why import key_dump, keys_of, no_keys_reason, why_data

    record = run_store(ctx, app, share).find(run)
    if why is None and not dump_keys:
        if as_json:
            print_json(record.model_dump(mode="json", by_alias=True))
            return
        print_record(record, all_partitions=all_partitions)
        return
    explained = why_data(record, why) if why is not None else None
    dump = None
    if dump_keys:
        keys = keys_of(record)
        if keys is None:
            from ..base.errors import AgiError

            raise AgiError(f"run {record.run_id} has no cache keys ({no_keys_reason(record)})",
                           fix="only runs that used the cache have keys: run without --no-cache")
        dump = key_dump(keys, [why] if why is not None else None)
    if as_json:
        if explained is None:
            print_json(dump)
        else:
            print_json(explained if dump is None else {**explained, "keys": dump})
        return
    if explained is not None:
        print_why(explained)
    if dump is not None:
        print_key_dump(record.run_id, dump)


@runs_group.command("prune")
@click.argument("app", required=False)
@apps_path_option
@RUNS_SHARE_OPTION
@click.option("--keep", type=click.IntRange(min=0), default=None, help="Keep the newest N runs of each app; remove the others.")
@click.option("--older-than", type=DURATION, default=None, help="Remove runs that ended longer ago than this (12h, 7d, 4w).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def runs_prune(ctx: click.Context, app: str | None, share: Path | None, keep: int | None, older_than: float | None, dry_run: bool,
               yes: bool, as_json: bool) -> None:
    """Remove old run folders (records, plans, out/ files) of APP, or of every app.

    \b
    --keep N: per app, keep the newest N runs. --older-than D: remove runs that ended more than
    D ago (an abandoned run: its last heartbeat). Given both, a run goes only when both say so.
    Never removed: a run still running (a dead manager's run reads `abandoned` and can go), a
    record that cannot be read. Cache entries are never touched: `agi cache gc` manages them.
    """
    from ..base.errors import AgiError
    from ..base.quantities import format_size
    from ..provenance.pruning import apply_prune, plan_prune
    from .cache_options import app_name, share_for

    if keep is None and older_than is None:
        raise AgiError("say which runs to remove: --keep N or --older-than DURATION",
                       fix="e.g. agi runs prune --keep 20, or agi runs prune --older-than 30d")
    root = share_for(ctx, app, share)
    plan = plan_prune(root, app_name(ctx, app, share) if app else None, keep=keep, older_than=older_than)
    if not dry_run and plan.remove and not yes:
        if not as_json:
            _print_prune(plan, "would remove")
        click.confirm(f"Remove {len(plan.remove)} run folder{'s' if len(plan.remove) != 1 else ''} "
                      f"({format_size(plan.freed)})?", abort=True, err=True)
    done = plan if dry_run else apply_prune(plan)
    if as_json:
        print_json({"share": str(root), "dry_run": dry_run, **done.to_json()})
        return
    _print_prune(done, "would remove" if dry_run else "removed", summary=True)


def _print_prune(plan: Any, verb: str, summary: bool = False) -> None:
    from ..base.quantities import format_size
    from .record_view import status_text

    out = console()
    if plan.remove:
        table(f"{verb} {len(plan.remove)} run{'s' if len(plan.remove) != 1 else ''}",
              ["app", "run", "status", "started", "size", "why"],
              ([run.app, run.run_id, status_text(run.status), short_time(run.started), format_size(run.size), why] for run, why in plan.remove))
    if not summary:
        return
    for run in plan.running:
        out.print(f"[cyan]kept {run.app} run {run.run_id}: it is still running[/]")
    for run in plan.unreadable:
        out.print(f"[yellow]kept {run.app} run {run.run_id}: its record cannot be read (remove {run.path} by hand)[/]")
    out.print(f"{verb} {len(plan.remove)} run{'s' if len(plan.remove) != 1 else ''}, "
              f"{format_size(plan.freed)} {'would be ' if verb != 'removed' else ''}freed; {plan.kept + len(plan.running) + len(plan.unreadable)} kept "
              "(cache entries are not touched: agi cache gc)")


# -- report ------------------------------------------------------------------------------------


@runs_group.command("report")
@click.argument("run")
@click.option("--app", default=None, help="Read APP's share (its workers_data_path).")
@apps_path_option
@RUNS_SHARE_OPTION
@json_option
@click.pass_context
def runs_report(ctx: click.Context, run: str, app: str | None, share: Path | None, as_json: bool) -> None:
    """Write RUN's report into its run folder: gantt.png (partitions per worker over time), load.png
    (planned against actual load per slot), dag.png (when the plan has dependencies), cache.png
    (hits, misses, entries stored, time saved: when the run used the cache) and report.pdf (a
    summary page, then those pictures). Needs matplotlib.

    RUN is a run id, a unique prefix of one, `last`, or a record's path.
    """
    from ..reports import write_report

    record = run_store(ctx, app, share).find(run)
    written = write_report(record)
    if as_json:
        print_json({"run_id": record.run_id, "app": record.app.name, "files": [str(p) for p in written]})
        return
    for path in written:
        click.echo(str(path))


# agi runs export|verify|import: in runs_bundle_cmds.py
runs_group.add_command(runs_export)
runs_group.add_command(runs_verify)
runs_group.add_command(runs_import)
