"""`import_agilab`: the stages of an AGILAB ``lab_stages.toml`` (or older ``lab_steps.toml``) as steps.

AGILAB keeps, per module (an app, e.g. ``flight``), an array of stages: ``D`` (description), ``Q``
(the prompt), ``M`` (the model), ``C`` (the code), ``E`` (the runtime: a project or venv folder) and
``R`` (``"agi.run"`` or ``"runpy"``); newer stages add ``id``, ``depends_on``, ``consumes``,
``produces`` and notebook keys ``NB_*``. ``[__meta__]`` holds ``schema = "agilab.lab_stages.v1"``
(``"agilab.lab_steps.v1"`` before the rename; nothing in the oldest files), ``version = 1`` and
``<module>__sequence``, the order the WORKFLOW page runs the stages in (indexes into the array).

A stage with code becomes a step: one whose code awaits ``AGI.install / get_distrib / run`` on an
app found here becomes that kind of step, our own snippet generated with the call's mode and
arguments (as ``--set``); any other code becomes a ``python`` step holding it as it is. Stages keep
their ids and ``depends_on``; a module without ``depends_on`` is chained in its sequence order, as
AGILAB runs it. Every other key goes to the step's ``origin``, so nothing is lost.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "lab_stages.toml"
>>> _ = path.write_text('''
... [__meta__]
... schema = "agilab.lab_stages.v1"
... demo__sequence = [1, 0]
... [[demo]]
... D = "Say hello"
... C = "print('hello')"
... R = "runpy"
... [[demo]]
... D = "Load the data"
... Q = "Read the CSV files"
... C = "print('load')"
... [[demo]]
... Q = "A prompt that was never turned into code"
... ''')
>>> result = import_agilab(path)
>>> [(step.id, step.kind, step.deps, step.description) for step in result.steps]
[('demo-2', 'python', [], 'Load the data'), ('demo-1', 'python', ['demo-2'], 'Say hello')]
>>> result.steps[0].origin["stage"]["Q"]
'Read the CSV files'
>>> result.skipped
[Note(where='/.../lab_stages.toml: module demo stage 3', why='no code (C): nothing to run')]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.errors import AgiError, AppNotFoundError
from .agilab_code import AgiCall, read_agi_call
from .agilab_stages import AGILAB_SCHEMAS, ImportResult, Note, Stage, fail, lab_schema, lab_stages, read_lab_file
from .model import Step

__all__ = ["AGILAB_SCHEMAS", "ImportResult", "Note", "import_agilab"]


def _code(stage: Stage, result: ImportResult) -> None:
    """Set ``stage.code``, or note why the stage makes no step."""
    code = stage.entry.get("C")
    if not isinstance(code, str) or not code.strip():
        result.skipped.append(Note(stage.where, "no code (C): nothing to run"))
        return
    try:
        compile(code, stage.where, "exec")
    except SyntaxError as exc:
        result.skipped.append(Note(stage.where, f"its code (C) is not Python: line {exc.lineno}: {exc.msg}"))
        return
    stage.code = code


def _resolve_deps(path: Path, stages: list[Stage]) -> dict[str, list[str]]:
    """Each kept stage's deps as step ids; a skipped stage's place is taken by its own deps."""
    by_module = {(stage.module, stage.name): stage for stage in stages}
    by_name: dict[str, Stage] = {}
    for stage in stages:
        by_name.setdefault(stage.name, stage)
    resolved: dict[str, list[str]] = {}

    def targets(stage: Stage, seen: tuple[str, ...]) -> list[str]:
        found: list[str] = []
        for dep in stage.deps:
            target = by_module.get((stage.module, dep)) or by_name.get(dep)
            if target is None:
                raise fail(f"{stage.where}: depends_on {dep!r}, which is not a stage id in this file",
                            f"fix depends_on of stage {stage.name!r}, or add a stage with id {dep!r}")
            if target.code is not None:
                found.append(target.step_id)
            elif target.step_id not in seen:  # skipped: depend on what it depended on
                found += targets(target, (*seen, target.step_id))
        return list(dict.fromkeys(found))

    for stage in stages:
        if stage.code is not None:
            resolved[stage.step_id] = targets(stage, (stage.step_id,))
    return resolved


def _origin(path: Path, schema: str | None, stage: Stage) -> dict[str, Any]:
    keys = {key: value for key, value in stage.entry.items() if key != "C"}
    return {"format": schema or "agilab (no __meta__)", "file": str(path.absolute()), "module": stage.module,
            "index": stage.index, "stage": keys}


def _agi_step(stage: Stage, call: AgiCall, deps: list[str], description: str,
              apps_path: Sequence[str | Path] | None) -> Step | str:
    """The agi step of ``call``, or why it cannot be one here."""
    from .authoring import snippet_step

    app = call.app or stage.module.removesuffix("_project")
    # the folders to look for the app in: the caller's, else the stage's own apps_path (when it is here), else ours
    choices: list[list[str] | None] = [[str(p) for p in apps_path]] if apps_path else []
    if not choices and call.apps_path and Path(call.apps_path).expanduser().is_dir():
        choices.append([str(Path(call.apps_path).expanduser())])
    if not apps_path:
        choices.append(None)
    missing = ""
    for paths in choices:
        try:
            return snippet_step(stage.step_id, call.kind, app, apps_path=paths, mode=None if call.mode is None else str(call.mode),
                                assignments=call.assignments, description=description, deps=deps)
        except AppNotFoundError as exc:
            missing = exc.message
        except AgiError as exc:
            return f"{call.kind} {app}: {exc.message}"
    return f"app {app!r} is not found here ({missing}); pass --apps-path"


def import_agilab(path: str | Path, *, apps_path: Sequence[str | Path] | None = None) -> ImportResult:
    """The steps of the AGILAB ``lab_stages.toml`` / ``lab_steps.toml`` at ``path``.

    ``apps_path``: the folders to find the stages' apps in (default: the folder the stage's own
    ``AgiEnv(apps_path=...)`` names when it exists here, then ``./apps`` and the bundled examples).
    Invalid TOML, another schema, an unknown ``depends_on`` and a cycle are `PipelineError`s naming
    the file and the stage.
    """
    path = Path(path)
    data = read_lab_file(path)
    result = ImportResult(source=path, schema=lab_schema(path, data))
    stages = lab_stages(path, data, result)
    for stage in stages:
        _code(stage, result)
    deps = _resolve_deps(path, stages)
    for stage in stages:
        if stage.code is None:
            continue
        entry = stage.entry
        description = str(entry.get("D") or "").strip() or str(entry.get("Q") or "").strip().split("\n")[0]
        origin = _origin(path, result.schema, stage)
        call = read_agi_call(stage.code)
        step: Step | str | None = None
        if isinstance(call, AgiCall):
            step = _agi_step(stage, call, deps[stage.step_id], description, apps_path)
            if isinstance(step, Step):
                origin["code"] = stage.code  # the AGILAB snippet the step was made from
                if call.dropped:
                    origin["dropped"] = call.dropped
        elif isinstance(call, str):
            step = call
        elif str(entry.get("R") or "").strip().lower().startswith("agi."):
            step = f"R is {entry['R']!r} but its code calls none of AGI.install, AGI.get_distrib, AGI.run"
        if isinstance(step, str):
            result.as_python.append(Note(stage.where, step))
            origin["not_converted"] = step
            step = None
        if step is None:
            step = Step(id=stage.step_id, kind="python", code=stage.code, description=description, deps=deps[stage.step_id])
        result.steps.append(step.model_copy(update={"origin": origin}))
    _check_cycles(path, stages, result.steps)
    return result


def _check_cycles(path: Path, stages: list[Stage], steps: list[Step]) -> None:
    import networkx as nx

    graph = nx.DiGraph([(dep, step.id) for step in steps for dep in step.deps])
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    where = {stage.step_id: stage for stage in stages}
    ring = [where[edge[0]] for edge in cycle]
    start = ring.index(min(ring, key=stages.index))  # name it from its first stage in the file: the same every time
    ring = ring[start:] + ring[:start]
    first = ring[0]
    names = " → ".join(stage.name for stage in [*ring, first])
    raise fail(f"{first.where}: the stages' depends_on form a cycle: {names}",
                f"remove one of these depends_on in {path.name}, then import it again")
