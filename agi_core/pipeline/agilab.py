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

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import AgiError, AppNotFoundError
from .agilab_code import AgiCall, read_agi_call
from .model import STEPS_SCHEMA, PipelineError, Step

__all__ = ["AGILAB_SCHEMAS", "ImportResult", "Note", "import_agilab"]

#: what ``[__meta__] schema`` may say: the current file, and the same file before AGILAB renamed steps to stages
AGILAB_SCHEMAS = ("agilab.lab_stages.v1", "agilab.lab_steps.v1")
_META = "__meta__"
_STAGE_KEYS = {"D", "Q", "M", "C", "E", "R"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Note(NamedTuple):
    """A stage that was left out, or kept as a python step, and why."""

    where: str
    why: str


@dataclass
class ImportResult:
    """The steps made from one AGILAB file, in its order, and what did not convert."""

    source: Path
    schema: str | None  # None: a file without [__meta__] (the oldest AGILAB files)
    steps: list[Step] = field(default_factory=list)
    skipped: list[Note] = field(default_factory=list)  # stages that made no step
    as_python: list[Note] = field(default_factory=list)  # AGI stages kept as python steps (their code as it is)


@dataclass
class _Stage:
    module: str
    index: int  # position in the module's array, as in <module>__sequence
    entry: dict[str, Any]
    where: str
    name: str  # the stage's AGILAB id, or the id made for it
    step_id: str
    deps: list[str]  # AGILAB ids (depends_on)
    code: str | None = None  # None: the stage is skipped


def _fail(message: str, fix: str) -> PipelineError:
    return PipelineError(message, fix=fix)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.") or "stage"


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise _fail(f"{path}: cannot read: {exc.strerror}", "give the path of an AGILAB lab_stages.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"{path}: invalid TOML: {exc}", "fix the syntax at the line shown (AGILAB's WORKFLOW page "
                    "refuses this file too)") from None


def _schema(path: Path, data: dict[str, Any]) -> str | None:
    if data.get("schema") == STEPS_SCHEMA:
        raise _fail(f"{path}: schema {STEPS_SCHEMA!r} is agi_core's own pipeline, not an AGILAB file",
                    f"nothing to import: use it as it is, e.g. `agi steps list --file {path}`")
    meta = data.get(_META)
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise _fail(f"{path}: [{_META}] is not a table", f"write [{_META}] schema = \"{AGILAB_SCHEMAS[0]}\"")
    schema = meta.get("schema") or None
    if schema is not None and schema not in AGILAB_SCHEMAS:
        raise _fail(f"{path}: [{_META}] schema {schema!r} is not {' or '.join(map(repr, AGILAB_SCHEMAS))}",
                    "import a lab_stages.toml written by AGILAB")
    version = meta.get("version", 1)
    if version != 1:
        raise _fail(f"{path}: [{_META}] version {version!r}: this importer reads version 1",
                    "save the file with an AGILAB that writes version 1, or report the new format")
    return schema


def _order(meta: dict[str, Any], module: str, count: int) -> list[int]:
    """AGILAB's run order: ``<module>__sequence`` (valid indexes, once each), then the stages it omits."""
    sequence = meta.get(f"{module}__sequence")
    order: list[int] = []
    for index in sequence if isinstance(sequence, list) else []:
        if type(index) is int and 0 <= index < count and index not in order:
            order.append(index)
    return order + [index for index in range(count) if index not in order]


def _depends_on(entry: dict[str, Any], where: str) -> list[str] | None:
    # the keys AGILAB's run controls read (pipeline_run_controls._stage_deps); None: the stage says nothing
    raw = next((entry[key] for key in ("depends_on", "deps", "dependencies") if key in entry), None)
    if raw is None:
        return None
    if isinstance(raw, str):
        return [raw.strip()] if raw.strip() else []
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return [item.strip() for item in raw if item.strip()]
    raise _fail(f"{where}: depends_on {raw!r} is not a list of stage ids", 'write depends_on = ["stage_id", ...]')


def _stages(path: Path, data: dict[str, Any], result: ImportResult) -> list[_Stage]:
    """Every stage of every module, in AGILAB's run order, with a unique step id."""
    meta = data.get(_META) if isinstance(data.get(_META), dict) else {}
    stages: list[_Stage] = []
    taken: set[str] = set()
    for module, entries in data.items():
        if module == _META or not isinstance(entries, list):
            continue
        if not any(isinstance(entry, dict) and _STAGE_KEYS & entry.keys() for entry in entries):
            continue  # not a module of stages (AGILAB skips these too)
        names: dict[str, str] = {}
        module_stages: list[_Stage] = []
        explicit = False
        for index in _order(meta, module, len(entries)):
            entry = entries[index]
            where = f"{path}: module {module} stage {index + 1}"
            if not isinstance(entry, dict):
                result.skipped.append(Note(where, f"not a table of stage keys: {entry!r}"))
                continue
            agilab_id = str(entry["id"]).strip() if str(entry.get("id") or "").strip() else None
            if agilab_id:
                where += f" (id {agilab_id})"
                if agilab_id in names:
                    raise _fail(f"{where}: id {agilab_id!r} is also the id of {names[agilab_id]}", "give each stage its own id")
            name = agilab_id or f"{module}-{index + 1}"
            step_id = agilab_id if agilab_id and _ID.match(agilab_id) else _slug(name)
            if step_id in taken:  # the same id in two modules: the later one is prefixed with its module
                base, n = f"{_slug(module)}-{step_id}", 2
                step_id = base
                while step_id in taken:
                    step_id, n = f"{base}-{n}", n + 1
            taken.add(step_id)
            names[name] = where
            deps = _depends_on(entry, where)
            explicit = explicit or deps is not None
            module_stages.append(_Stage(module, index, entry, where, name, step_id, deps or []))
        if not explicit:  # no stage says what it needs: AGILAB's order is the only order, so keep it
            for previous, stage in pairwise(module_stages):
                stage.deps = [previous.name]
        stages += module_stages
    if not stages:
        raise _fail(f"{path}: no AGILAB stages (no module key holds an array of tables with D/Q/C keys)",
                    "import the lab_stages.toml (or lab_steps.toml) of an AGILAB project")
    return stages


def _code(stage: _Stage, result: ImportResult) -> None:
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


def _resolve_deps(path: Path, stages: list[_Stage]) -> dict[str, list[str]]:
    """Each kept stage's deps as step ids; a skipped stage's place is taken by its own deps."""
    by_module = {(stage.module, stage.name): stage for stage in stages}
    by_name: dict[str, _Stage] = {}
    for stage in stages:
        by_name.setdefault(stage.name, stage)
    resolved: dict[str, list[str]] = {}

    def targets(stage: _Stage, seen: tuple[str, ...]) -> list[str]:
        found: list[str] = []
        for dep in stage.deps:
            target = by_module.get((stage.module, dep)) or by_name.get(dep)
            if target is None:
                raise _fail(f"{stage.where}: depends_on {dep!r}, which is not a stage id in this file",
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


def _origin(path: Path, schema: str | None, stage: _Stage) -> dict[str, Any]:
    keys = {key: value for key, value in stage.entry.items() if key != "C"}
    return {"format": schema or "agilab (no __meta__)", "file": str(path.absolute()), "module": stage.module,
            "index": stage.index, "stage": keys}


def _agi_step(stage: _Stage, call: AgiCall, deps: list[str], description: str,
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
    data = _read(path)
    result = ImportResult(source=path, schema=_schema(path, data))
    stages = _stages(path, data, result)
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


def _check_cycles(path: Path, stages: list[_Stage], steps: list[Step]) -> None:
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
    raise _fail(f"{first.where}: the stages' depends_on form a cycle: {names}",
                f"remove one of these depends_on in {path.name}, then import it again")
