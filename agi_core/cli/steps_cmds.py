"""``agi steps``: the pipeline kept in ``lab_steps.toml``: add, list, show, refresh, remove (running
it: `steps_run_cmds`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import MODE_HELP, apps_path_option, apps_paths, json_option, set_option
from .output import console, print_json, table
from .steps_options import deps_list, deps_option, file_option

__all__ = ["steps_group"]

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
@deps_option
@click.option("--description", default="", help="What the step is for. Default: 'KIND APP'.")
@click.option("--mode", "-m", default=None, help=MODE_HELP)
@set_option()
@click.option("--no-cache", "no_cache", is_flag=True, help="run steps: neither reuse nor store cached results.")
@file_option
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
                        mode=mode, assignments=assignments, no_cache=no_cache, description=description, deps=deps_list(deps))
    _add(file, step, step_id is not None)


@steps_group.command("add-python")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "step_id", default=None, help="The step's id. Default: the file's name without .py.")
@deps_option
@click.option("--description", default="", help="What the step is for.")
@file_option
def steps_add_python(source: Path, step_id: str | None, deps: tuple[str, ...], description: str, file: Path) -> None:
    """Add a Python file as a step. Its code is copied into the pipeline; the step runs with the
    pipeline file's folder as working directory. When the file changes, the step is stale until
    `agi steps refresh ID` copies it again."""
    from ..pipeline import python_step
    from ..pipeline.model import id_from

    _add(file, python_step(step_id or id_from(source.stem), source, description=description, deps=deps_list(deps)),
         step_id is not None)


def _status_cell(last: tuple[str, str] | None) -> str:
    return f"{last[0]} ({last[1]})" if last else "never run"


@steps_group.command("list")
@file_option
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
@file_option
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
@file_option
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
@file_option
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


def _register() -> None:
    """The commands kept in their own modules: running (`steps_run_cmds`), importing AGILAB's files."""
    from .steps_import_cmd import import_command
    from .steps_run_cmds import steps_report, steps_run, steps_runs

    for command in (steps_run, steps_runs, steps_report, import_command):
        steps_group.add_command(command)


_register()
