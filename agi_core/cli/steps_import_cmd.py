"""``agi steps import FILE``: AGILAB's ``lab_stages.toml`` / ``lab_steps.toml`` into our pipeline file."""

from __future__ import annotations

from pathlib import Path

import click

from .options import apps_path_option, apps_paths
from .output import console, table
from .steps_options import file_option

__all__ = ["import_command"]


@click.command("import")
@click.argument("source", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@file_option
@click.option("--replace", is_flag=True, help="Replace the whole pipeline file with the imported steps (default: add "
              "them; an id already in the file is an error).")
@apps_path_option
@click.pass_context
def import_command(ctx: click.Context, source: Path, file: Path, replace: bool) -> None:
    """Import the stages of an AGILAB lab_stages.toml (or older lab_steps.toml) as steps.

    Each stage with code (C) becomes a step with the stage's id (or MODULE-N), its description (D)
    and its depends_on; a module without depends_on is chained in its __sequence order. A stage
    whose code awaits AGI.install, AGI.get_distrib or AGI.run on an app found here (with literal
    arguments) becomes an install, distrib or run step: our snippet, with the call's mode and
    arguments as --set. Any other code becomes a python step, as it is. The other stage keys (Q, M,
    E, R, consumes, produces, NB_*) are kept in the step's origin. The table lists the steps, then
    the stages that were not converted, and why.

    \b
    Example:
      agi steps import ~/agilab/apps/flight_project/lab_stages.toml --apps-path ./apps
      agi steps list
      agi steps run
    """
    from ..pipeline import PipelineError, load_pipeline, save_pipeline
    from ..pipeline.agilab import import_agilab
    from ..pipeline.model import Pipeline

    paths = apps_paths(ctx)
    result = import_agilab(source, apps_path=[str(p) for p in paths] if paths else None)

    def stage(where: str) -> str:  # the tables' titles name the file already
        return where.removeprefix(f"{source}: ")

    notes = [(stage(where), "python step: " + why) for where, why in result.as_python]
    notes += [(stage(where), "skipped: " + why) for where, why in result.skipped]
    if not result.steps:
        table(f"not converted ({source})", ["stage", "why"], notes)
        raise PipelineError(f"{source}: no stage has Python code to import; {file} is unchanged",
                            fix="import a lab_stages.toml whose stages have code (C); the table above says why each was skipped")
    if replace:
        pipeline = Pipeline(steps=result.steps)
    else:
        pipeline = load_pipeline(file, missing_ok=True)
        clashes = [step.id for step in result.steps if step.id in pipeline.ids()]
        if clashes:
            raise PipelineError(f"{file} already has step(s) {', '.join(map(repr, clashes))}, imported from {source}",
                                fix="remove them (`agi steps remove ID`), or replace the whole file with --replace")
        pipeline.steps.extend(result.steps)
    save_pipeline(file, pipeline)  # validates ids, deps and cycles, then writes beside the file and renames

    schema = result.schema or "no [__meta__] schema"
    table(f"{len(result.steps)} step(s) from {source} ({schema}) {'replaced' if replace else 'added to'} {file}",
          ["id", "kind", "app", "deps", "description"],
          [(s.id, s.kind, s.app or "", ", ".join(s.deps), s.description) for s in result.steps])
    if notes:
        table("not converted", ["stage", "why"], notes)
    else:
        console().print("every stage converted")
