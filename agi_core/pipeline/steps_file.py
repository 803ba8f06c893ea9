"""Read and write ``lab_steps.toml`` (schema ``agi.lab_steps.v1``).

Written with tomlkit: a step's code is a multi-line string you can read and edit in place, and
rewriting the file keeps the comments of the steps (and of the top of the file) it did not change.
Every write goes beside the file and is renamed over it, after the new content is validated.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "lab_steps.toml"
>>> save_pipeline(path, Pipeline(steps=[Step(id="hello", kind="python", code="print('hi')\\n")]))
>>> load_pipeline(path).steps[0].code
"print('hi')\\n"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..base.atomic import write_text_atomic
from .model import STEPS_SCHEMA, Pipeline, PipelineError, Step

__all__ = ["DEFAULT_FILE", "load_pipeline", "save_pipeline"]

DEFAULT_FILE = "lab_steps.toml"
_HEADER = ("lab_steps.toml: the steps of an agi_core pipeline (schema agi.lab_steps.v1).\n"
           "Manage it with `agi steps add|add-python|list|show|refresh|remove|run`; see docs/pipelines.md.")


def _describe(error: ValidationError, path: Path, data: dict[str, Any]) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = list(item["loc"])
        if len(where) >= 2 and where[0] == "steps" and isinstance(where[1], int):
            steps = data.get("steps") or []
            step_id = steps[where[1]].get("id", f"#{where[1] + 1}") if where[1] < len(steps) and isinstance(steps[where[1]], dict) else f"#{where[1] + 1}"
            key = ".".join(str(part) for part in where[2:])
            problems.append(f"step {step_id!r}{' key ' + key if key else ''}: {item['msg']}")
        else:
            problems.append(f"{'.'.join(str(part) for part in where) or 'file'}: {item['msg']}")
    return f"{path}: " + "; ".join(problems)


def load_pipeline(path: Path, *, missing_ok: bool = False) -> Pipeline:
    """The pipeline in ``path``, checked: its schema, every step's keys, ids, deps and cycles.
    A missing file is an error, or an empty pipeline with ``missing_ok``."""
    import tomlkit

    path = Path(path)
    if not path.exists():
        if missing_ok:
            return Pipeline()
        raise PipelineError(f"{path}: no such pipeline file",
                            fix="add a step with `agi steps add APP run` (it creates the file), or pass --file")
    try:
        data = tomlkit.parse(path.read_text()).unwrap()
    except tomlkit.exceptions.ParseError as exc:
        raise PipelineError(f"{path}: invalid TOML: {exc}", fix="fix the syntax at the line shown") from None
    schema = data.get("schema", STEPS_SCHEMA)
    if schema != STEPS_SCHEMA:
        hint = ("this looks like an AGILAB file: import it with `agi steps import FILE`"
                if str(schema).startswith("agilab") or "__meta__" in data else f"this agi_core reads {STEPS_SCHEMA}")
        raise PipelineError(f"{path}: schema {schema!r} is not {STEPS_SCHEMA!r}", fix=hint)
    try:
        pipeline = Pipeline.model_validate({"schema": schema, "steps": data.get("steps") or []})
    except ValidationError as exc:
        raise PipelineError(_describe(exc, path, data), fix=f"fix the key(s) named in {path}") from None
    try:
        pipeline.graph()
    except PipelineError as exc:
        raise PipelineError(f"{path}: {exc.message}", fix=exc.fix) from None
    return pipeline


def _code_string(code: str) -> Any:
    import tomlkit

    # literal ('''...''') keeps backslashes as written; it cannot hold ''' itself
    literal = "'''" not in code and "\r" not in code
    return tomlkit.string(code if code.endswith("\n") or not code else code + "\n", multiline=True, literal=literal)


def _step_table(step: Step) -> Any:
    import tomlkit

    table = tomlkit.table()
    for key, value in step.model_dump(exclude_none=True, exclude_defaults=False).items():
        if key == "code":
            continue
        if value in ([], False) and key not in ("deps",):
            continue
        table.add(key, value)
    table.add("code", _code_string(step.code))
    return table


def save_pipeline(path: Path, pipeline: Pipeline) -> None:
    """Write ``pipeline`` to ``path`` (validated first), keeping the comments of unchanged steps."""
    import tomlkit

    pipeline.graph()  # never write an invalid pipeline
    path = Path(path)
    old_tables: dict[str, Any] = {}
    document = tomlkit.document()
    if path.exists():
        try:
            old = tomlkit.parse(path.read_text())
        except tomlkit.exceptions.ParseError:
            old = None
        if old is not None:
            for table in old.get("steps") or []:
                if isinstance(table, dict) and "id" in table:
                    old_tables[str(table["id"])] = table
            for key, value in old.body:  # keep the top of the file: its comments and any other keys
                if key is not None and key.key in ("schema", "steps"):
                    continue
                document.add(key, value) if key is not None else document.add(value)
    if not document.body:
        for line in _HEADER.splitlines():
            document.add(tomlkit.comment(line))
    document.add("schema", STEPS_SCHEMA)
    steps = tomlkit.aot()
    for step in pipeline.steps:
        old_table = old_tables.get(step.id)
        keep = False
        if old_table is not None:
            try:
                keep = Step.model_validate(old_table.unwrap()) == step
            except ValidationError:
                keep = False
        steps.append(old_table if keep else _step_table(step))
    document.add("steps", steps)
    text = tomlkit.dumps(document)
    Pipeline.model_validate({"schema": STEPS_SCHEMA, "steps": tomlkit.parse(text).unwrap().get("steps") or []})
    write_text_atomic(path, text)
