"""The PIPELINE page's data and edits: the steps of ``lab_steps.toml`` with their last status,
staleness and deps; adding a step from the app's current settings; reordering; editing deps."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..pipeline import Pipeline, PipelineError, PipelineStore, load_pipeline, refreshed, save_pipeline, snippet_step, staleness
from ..pipeline.model import id_from
from .config import UiConfig

__all__ = ["StepRow", "add_step", "move_step", "refresh_steps", "remove_step", "set_deps", "step_rows"]


@dataclass
class StepRow:
    """One step as the page lists it."""

    id: str
    kind: str
    app: str | None
    description: str
    deps: list[str]
    stale: str | None
    status: str  # its status in the newest pipeline run that ran it, or "never run"
    pipeline_run: str | None
    run_ids: list[str]


def _file(config: UiConfig) -> Path:
    return config.steps_file.absolute()


def step_rows(config: UiConfig) -> list[StepRow]:
    file = _file(config)
    pipeline = load_pipeline(file, missing_ok=True)
    store = PipelineStore(file)
    records = store.list() if pipeline.steps else []
    rows = []
    for step in pipeline.steps:
        found = next(((r, s) for r in records for s in r.steps if s.id == step.id and s.status not in ("pending", "not_run")), None)
        rows.append(StepRow(step.id, step.kind, step.app, step.description, list(step.deps), staleness(step),
                            found[1].status if found else "never run", found[0].pipeline_run if found else None,
                            list(found[1].run_ids) if found else []))
    return rows


def add_step(config: UiConfig, app: str, kind: str = "run", *, step_id: str | None = None, deps: Sequence[str] | None = None,
             description: str = "") -> str:
    """Add the snippet of ``kind`` for ``app``'s current settings as a step; returns its id.
    ``deps=None`` makes it depend on the last step, so a pipeline built on the page reads top to bottom."""
    file = _file(config)
    pipeline = load_pipeline(file, missing_ok=True)
    base = step_id or id_from(f"{kind}_{app}")
    new_id, n = base, 2
    while step_id is None and new_id in pipeline.ids():
        new_id, n = f"{base}_{n}", n + 1
    if new_id in pipeline.ids():
        raise PipelineError(f"there is already a step {new_id!r}", fix="choose another id")
    assignments = [f"cluster.workers_data_path={json.dumps(str(config.share))}"] if config.share else []
    if deps is None:
        deps = [pipeline.steps[-1].id] if pipeline.steps else []
    step = snippet_step(new_id, kind, app, apps_path=list(config.apps_path) if config.apps_path is not None else None,
                        assignments=assignments, description=description, deps=deps)
    save_pipeline(file, Pipeline(steps=[*pipeline.steps, step]))
    return new_id


def move_step(config: UiConfig, step_id: str, offset: int) -> None:
    """Move a step up (-1) or down (+1) in the file (the run order follows deps, then file order)."""
    file = _file(config)
    pipeline = load_pipeline(file)
    ids = pipeline.ids()
    pipeline.get(step_id)
    i = ids.index(step_id)
    j = max(0, min(len(ids) - 1, i + offset))
    steps = list(pipeline.steps)
    steps.insert(j, steps.pop(i))
    save_pipeline(file, Pipeline(steps=steps))


def set_deps(config: UiConfig, step_id: str, deps: Sequence[str]) -> None:
    """Replace a step's deps (checked: known steps, no cycle; nothing written otherwise)."""
    file = _file(config)
    pipeline = load_pipeline(file)
    step = pipeline.get(step_id)
    steps = [s.model_copy(update={"deps": [d for d in deps if d]}) if s.id == step.id else s for s in pipeline.steps]
    save_pipeline(file, Pipeline(steps=steps))


def remove_step(config: UiConfig, step_id: str) -> None:
    file = _file(config)
    pipeline = load_pipeline(file)
    pipeline.get(step_id)
    dependants = [s.id for s in pipeline.steps if step_id in s.deps]
    if dependants:
        raise PipelineError(f"step {step_id!r} is a dep of {', '.join(dependants)}", fix="edit their deps first")
    save_pipeline(file, Pipeline(steps=[s for s in pipeline.steps if s.id != step_id]))


def refresh_steps(config: UiConfig, step_ids: Sequence[str] = ()) -> list[str]:
    """Generate the stale steps among ``step_ids`` (all stale steps when empty) again from today's
    settings, as ``agi steps refresh`` does (id, description and deps kept); returns their ids."""
    file = _file(config)
    pipeline = load_pipeline(file)
    for step_id in step_ids:
        pipeline.get(step_id)  # an unknown id is an error, naming the file
    chosen = [s for s in pipeline.steps if (not step_ids or s.id in step_ids) and staleness(s) is not None]
    if not chosen:
        return []
    new = {s.id: refreshed(s) for s in chosen}
    save_pipeline(file, Pipeline(steps=[new.get(s.id, s) for s in pipeline.steps]))
    return list(new)
