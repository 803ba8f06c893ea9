"""``agi steps run|runs|report``: run a pipeline, list its runs, draw one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click

from .options import json_option
from .output import console, print_json, short_time, table
from .steps_options import file_option

__all__ = ["steps_report", "steps_run", "steps_runs"]


def _render_event(event: Any) -> None:
    from rich.markup import escape

    from ..base.events import StepFinished, StepStarted

    out = console(stderr=True)
    if isinstance(event, StepStarted):
        what = f"{event.step_kind} {event.app}" if event.app else event.step_kind
        out.print(f"[cyan]▶[/] {event.step}  ({what})")
    elif isinstance(event, StepFinished):
        mark = {"ok": "[green]✓[/]", "reused": "[green]↺[/]", "failed": "[red]✗[/]", "skipped": "[yellow]–[/]"}.get(event.status, "•")
        runs = f"  run {', '.join(event.run_ids)}" if event.run_ids and event.status != "reused" else ""
        took = f" {event.duration_s:.1f} s" if event.duration_s else ""
        reason = f": {escape(event.reason.splitlines()[0])}" if event.reason and event.status not in ("ok",) else ""
        out.print(f"{mark} {event.step}  {event.status}{took}{runs}{reason}")


def _summary(record: Any) -> None:
    table(f"pipeline run {record.pipeline_run}: {record.status} in {record.duration_s:.1f} s",
          ["step", "status", "s", "runs", "note"],
          [(s.id, s.status, f"{s.duration_s:.1f}" if s.duration_s else "", ", ".join(s.run_ids),
            (s.reason or s.stale or "").splitlines()[0] if (s.reason or s.stale) else "") for s in record.steps])


@click.command("run")
@click.argument("step_ids", metavar="[IDS]...", nargs=-1)
@click.option("--all", "all_steps", is_flag=True, help="Run every step (the default when no ids are given).")
@click.option("--from", "from_step", metavar="ID", default=None, help="Run ID and every step that depends on it.")
@click.option("--resume", "resume", metavar="RUN", is_flag=False, flag_value="last", default=None,
              help="Run a failed or interrupted pipeline run again (default: the last one): its ok steps are not run "
                   "again, and the runs of the others reuse what they cached.")
@click.option("--allow-stale", is_flag=True, help="Run stale steps as they are (each warns in its log).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="At most this many steps at the same time. Default: 4, or AGI_STEPS_JOBS.")
@file_option
@json_option
def steps_run(step_ids: tuple[str, ...], all_steps: bool, from_step: str | None, resume: str | None, allow_stale: bool,
              jobs: int | None, file: Path, as_json: bool) -> None:
    """Run steps in dependency order, independent steps at the same time.

    With no ids (or --all): every step. With ids: those steps only. With --from ID: ID and every
    step after it. A step that fails stops the steps that depend on it; the others finish. The
    pipeline run's record (agi.pipeline.v1), each step's script, log and run ids are kept in
    pipeline_runs/<id>/ beside the pipeline file; `agi steps runs` lists them.

    \b
    Examples:
      agi steps run
      agi steps run render plot
      agi steps run --from render
      agi steps run --resume
    """
    from ..pipeline import DEFAULT_JOBS, PipelineRunError, run_pipeline

    if all_steps and (step_ids or from_step):
        raise click.UsageError("--all runs every step: give it without ids or --from")
    jobs = jobs or int(os.environ.get("AGI_STEPS_JOBS") or DEFAULT_JOBS)
    try:
        record = asyncio.run(run_pipeline(file, steps=step_ids, from_step=from_step, resume=resume, allow_stale=allow_stale,
                                          jobs=jobs, emit=None if as_json else _render_event))
    except PipelineRunError as exc:
        if as_json:
            print_json(exc.record.model_dump(by_alias=True))
        else:
            _summary(exc.record)
        raise
    if as_json:
        print_json(record.model_dump(by_alias=True))
    else:
        _summary(record)


@click.command("runs")
@file_option
@click.option("--limit", "-n", default=20, show_default=True, help="Show at most this many (0: all).")
@json_option
def steps_runs(file: Path, limit: int, as_json: bool) -> None:
    """The pipeline runs of this pipeline file, newest first."""
    from ..pipeline import PipelineStore

    records = PipelineStore(file).list()
    records = records[:limit] if limit else records
    if as_json:
        print_json([r.model_dump(by_alias=True) for r in records])
        return
    table(f"pipeline runs of {file}", ["run", "status", "started", "s", "selection", "steps"],
          [(r.pipeline_run, r.status, short_time(r.started), f"{r.duration_s:.1f}", r.selection,
            " ".join(f"{k}={v}" for k, v in sorted(r.counts().items()))) for r in records])


@click.command("report")
@click.argument("run", default="last")
@file_option
def steps_report(run: str, file: Path) -> None:
    """Write gantt.png (steps over time), dag.png (the steps and their deps, by status) and
    report.pdf (a summary page, then both) into the pipeline run's folder."""
    from ..pipeline import PipelineStore
    from ..reports import write_pipeline_report

    store = PipelineStore(file)
    record = store.find(run)
    out = console()
    for path in write_pipeline_report(record, store.run_dir(record)):
        out.print(str(path))
