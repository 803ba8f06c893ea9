"""``agi steps``: the pipeline kept in ``lab_steps.toml``: add, list, show, refresh, remove, run."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .options import MODE_HELP, apps_path_option, apps_paths, json_option, set_option
from .output import console, print_json, table
from .steps_import_cmd import import_command

__all__ = ["steps_group"]

F = TypeVar("F", bound=Callable[..., Any])
FILE_ENV = "AGI_STEPS_FILE"


def _file_option(function: F) -> F:
    return click.option("--file", "-f", "file", type=click.Path(dir_okay=False, path_type=Path), envvar=FILE_ENV,
                        default="lab_steps.toml", show_default=True,
                        help=f"The pipeline file (or set {FILE_ENV}).")(function)


def _deps(values: tuple[str, ...]) -> list[str]:
    """``--deps a,b --deps c`` → [a, b, c]."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _deps_option(function: F) -> F:
    return click.option("--deps", "-d", multiple=True, metavar="IDS",
                        help="Steps that must succeed first (comma-separated or repeated). Default: none, so the step "
                             "may run at the same time as the others.")(function)


def _free_id(taken: list[str], base: str) -> str:
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _add(file: Path, step: Any, step_id_given: bool) -> None:
    from ..pipeline import PipelineError, load_pipeline, save_pipeline

    pipeline = load_pipeline(file, missing_ok=True)
    if step.id in pipeline.ids():
        if step_id_given:
            raise PipelineError(f"{file} already has a step {step.id!r}",
                                fix=f"choose another --id, or regenerate it with `agi steps refresh {step.id}`")
        step = step.model_copy(update={"id": _free_id(pipeline.ids(), step.id)})
    pipeline.steps.append(step)
    save_pipeline(file, pipeline)  # checks deps and cycles before writing
    deps = f"  after {', '.join(step.deps)}" if step.deps else ""
    console(stderr=True).print(f"added step [bold]{step.id}[/] ({step.kind}{' ' + step.app if step.app else ''}){deps} to {file}")


@click.group("steps")
def steps_group() -> None:
    """A pipeline: steps kept in lab_steps.toml, run in dependency order.

    A step is a generated snippet (the `AGI.install`, `AGI.get_distrib` or `AGI.run` call that
    `agi snippet` prints, with today's settings) or a Python file. Steps name the steps they
    depend on; independent steps run at the same time. A step whose app settings changed since it
    was generated is stale: it is not run until refreshed (or with --allow-stale).

    \b
    Example:
      agi steps add mandelbrot install --id setup
      agi steps add mandelbrot run --id render --deps setup --set bands=8
      agi steps add-python plot.py --deps render
      agi steps list
      agi steps run                    # everything, in order
      agi steps run --resume           # after a failure: the ok steps are not run again
      agi steps report last            # gantt.png, dag.png, report.pdf of the last pipeline run
    """


@steps_group.command("add")
@click.argument("app")
@click.argument("kind", type=click.Choice(["install", "distrib", "run"]))
@apps_path_option
@click.option("--id", "step_id", default=None, help="The step's id. Default: KIND-APP (made unique).")
@_deps_option
@click.option("--description", default="", help="What the step is for. Default: 'KIND APP'.")
@click.option("--mode", "-m", default=None, help=MODE_HELP)
@set_option()
@click.option("--no-cache", "no_cache", is_flag=True, help="run steps: neither reuse nor store cached results.")
@_file_option
@click.pass_context
def steps_add(ctx: click.Context, app: str, kind: str, step_id: str | None, deps: tuple[str, ...], description: str,
              mode: str | None, assignments: tuple[str, ...], no_cache: bool, file: Path) -> None:
    """Add APP's KIND snippet (as `agi snippet APP KIND` prints it) as a step."""
    from ..pipeline import snippet_step
    from ..pipeline.model import id_from

    if no_cache and kind != "run":
        raise click.UsageError("--no-cache applies to run steps only")
    paths = apps_paths(ctx)
    step = snippet_step(step_id or id_from(f"{kind}-{app}"), kind, app, apps_path=[str(p) for p in paths] if paths else None,
                        mode=mode, assignments=assignments, no_cache=no_cache, description=description, deps=_deps(deps))
    _add(file, step, step_id is not None)


@steps_group.command("add-python")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "step_id", default=None, help="The step's id. Default: the file's name without .py.")
@_deps_option
@click.option("--description", default="", help="What the step is for.")
@_file_option
def steps_add_python(source: Path, step_id: str | None, deps: tuple[str, ...], description: str, file: Path) -> None:
    """Add a Python file as a step. Its code is copied into the pipeline; the step runs with the
    pipeline file's folder as working directory. When the file changes, the step is stale until
    `agi steps refresh ID` copies it again."""
    from ..pipeline import python_step
    from ..pipeline.model import id_from

    _add(file, python_step(step_id or id_from(source.stem), source, description=description, deps=_deps(deps)),
         step_id is not None)


def _status_cell(last: tuple[str, str] | None) -> str:
    return f"{last[0]} ({last[1]})" if last else "never run"


@steps_group.command("list")
@_file_option
@json_option
def steps_list(file: Path, as_json: bool) -> None:
    """The steps, in run order, with their deps, last status and staleness."""
    from ..pipeline import PipelineStore, load_pipeline, staleness

    pipeline = load_pipeline(file)
    last = PipelineStore(file).last_status()
    rows = []
    for step_id in pipeline.order():
        step = pipeline.get(step_id)
        rows.append({"id": step.id, "kind": step.kind, "app": step.app, "deps": step.deps, "description": step.description,
                     "last_status": last.get(step.id, (None, None))[0], "last_pipeline_run": last.get(step.id, (None, None))[1],
                     "stale": staleness(step)})
    if as_json:
        print_json(rows)
        return
    if not rows:
        console().print(f"{file} has no steps: add one with `agi steps add APP run`")
        return
    table(f"{file}  ({len(rows)} steps, run order)", ["id", "kind", "app", "deps", "last status", "stale", "description"],
          [(r["id"], r["kind"], r["app"] or "", ", ".join(r["deps"]), _status_cell(last.get(r["id"])),
            r["stale"] or "no", r["description"]) for r in rows])


@steps_group.command("show")
@click.argument("step_id", metavar="ID")
@_file_option
@json_option
def steps_show(step_id: str, file: Path, as_json: bool) -> None:
    """One step: its fields, staleness, last status, and its code."""
    from rich.syntax import Syntax

    from ..pipeline import PipelineStore, load_pipeline, staleness

    step = load_pipeline(file).get(step_id)
    stale = staleness(step)
    last = PipelineStore(file).last_status().get(step.id)
    if as_json:
        print_json({**step.model_dump(), "stale": stale, "last_status": last[0] if last else None,
                    "last_pipeline_run": last[1] if last else None})
        return
    out = console()
    out.print(f"[bold]{step.id}[/]  {step.kind}{'  app ' + step.app if step.app else ''}  {step.description}")
    for label, value in (("deps", ", ".join(step.deps) or "none"), ("mode", step.mode), ("set", " ".join(step.set) or None),
                         ("settings hash", step.settings_hash), ("source", step.source), ("generated", step.generated),
                         ("stale", stale or "no"), ("last status", _status_cell(last))):
        if value:
            out.print(f"  {label}: {value}")
    out.print(Syntax(step.code, "python", line_numbers=True, word_wrap=True))


@steps_group.command("refresh")
@click.argument("step_ids", metavar="[IDS]...", nargs=-1)
@click.option("--all", "all_steps", is_flag=True, help="Refresh every step.")
@_file_option
def steps_refresh(step_ids: tuple[str, ...], all_steps: bool, file: Path) -> None:
    """Generate steps again from today's settings (python steps: copy their file again), keeping
    their ids, descriptions and deps. Use it on stale steps."""
    from ..pipeline import load_pipeline, refreshed, save_pipeline, staleness

    if bool(step_ids) == all_steps:
        raise click.UsageError("name the steps to refresh, or give --all")
    pipeline = load_pipeline(file)
    chosen = set(pipeline.ids() if all_steps else step_ids)
    for step_id in chosen:
        pipeline.get(step_id)  # unknown ids fail before anything is written
    changed = []
    for index, step in enumerate(pipeline.steps):
        if step.id in chosen:
            was = staleness(step)
            new = refreshed(step)
            if new.code != step.code or new.settings_hash != step.settings_hash or was:
                changed.append((step.id, was or "regenerated"))
            pipeline.steps[index] = new
    save_pipeline(file, pipeline)
    out = console(stderr=True)
    for step_id, why in changed:
        out.print(f"refreshed [bold]{step_id}[/] ({why})")
    if not changed:
        out.print("nothing changed: every step named was up to date")


@steps_group.command("remove")
@click.argument("step_id", metavar="ID")
@click.option("--force", is_flag=True, help="Also remove ID from the deps of the steps that depend on it.")
@_file_option
def steps_remove(step_id: str, force: bool, file: Path) -> None:
    """Remove a step. Steps that depend on it keep it from being removed, unless --force."""
    from ..pipeline import PipelineError, load_pipeline, save_pipeline

    pipeline = load_pipeline(file)
    pipeline.get(step_id)
    dependants = [step.id for step in pipeline.steps if step_id in step.deps]
    if dependants and not force:
        raise PipelineError(f"step(s) {', '.join(dependants)} depend on {step_id!r}",
                            fix=f"remove them first, or give --force to drop {step_id!r} from their deps")
    pipeline.steps = [step.model_copy(update={"deps": [d for d in step.deps if d != step_id]})
                      for step in pipeline.steps if step.id != step_id]
    save_pipeline(file, pipeline)
    console(stderr=True).print(f"removed step [bold]{step_id}[/] from {file}")


def _render_event(event: Any) -> None:
    from rich.markup import escape

    from ..events import StepFinished, StepStarted

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


@steps_group.command("run")
@click.argument("step_ids", metavar="[IDS]...", nargs=-1)
@click.option("--all", "all_steps", is_flag=True, help="Run every step (the default when no ids are given).")
@click.option("--from", "from_step", metavar="ID", default=None, help="Run ID and every step that depends on it.")
@click.option("--resume", "resume", metavar="RUN", is_flag=False, flag_value="last", default=None,
              help="Run a failed or interrupted pipeline run again (default: the last one): its ok steps are not run "
                   "again, and the runs of the others reuse what they cached.")
@click.option("--allow-stale", is_flag=True, help="Run stale steps as they are (each warns in its log).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="At most this many steps at the same time. Default: 4, or AGI_STEPS_JOBS.")
@_file_option
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


@steps_group.command("runs")
@_file_option
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
          [(r.pipeline_run, r.status, r.started[:19], f"{r.duration_s:.1f}", r.selection,
            " ".join(f"{k}={v}" for k, v in sorted(r.counts().items()))) for r in records])


@steps_group.command("report")
@click.argument("run", default="last")
@_file_option
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


steps_group.add_command(import_command)  # `agi steps import`: AGILAB's files (its own module)
