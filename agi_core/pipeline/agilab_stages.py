"""Reading an AGILAB ``lab_stages.toml`` (or older ``lab_steps.toml``): its schema, and each module's
stages in AGILAB's run order with their ids and ``depends_on`` (`lab_stages`); `import_agilab`
(`agi_core.pipeline.agilab`) turns them into steps.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

from .model import STEPS_SCHEMA, PipelineError, Step

__all__ = ["AGILAB_SCHEMAS", "ImportResult", "Note", "Stage", "fail", "lab_schema", "lab_stages", "read_lab_file"]


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
class Stage:
    module: str
    index: int  # position in the module's array, as in <module>__sequence
    entry: dict[str, Any]
    where: str
    name: str  # the stage's AGILAB id, or the id made for it
    step_id: str
    deps: list[str]  # AGILAB ids (depends_on)
    code: str | None = None  # None: the stage is skipped


def fail(message: str, fix: str) -> PipelineError:
    return PipelineError(message, fix=fix)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.") or "stage"


def read_lab_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise fail(f"{path}: cannot read: {exc.strerror}", "give the path of an AGILAB lab_stages.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise fail(f"{path}: invalid TOML: {exc}", "fix the syntax at the line shown (AGILAB's WORKFLOW page "
                    "refuses this file too)") from None


def lab_schema(path: Path, data: dict[str, Any]) -> str | None:
    if data.get("schema") == STEPS_SCHEMA:
        raise fail(f"{path}: schema {STEPS_SCHEMA!r} is agi_core's own pipeline, not an AGILAB file",
                    f"nothing to import: use it as it is, e.g. `agi steps list --file {path}`")
    meta = data.get(_META)
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise fail(f"{path}: [{_META}] is not a table", f"write [{_META}] schema = \"{AGILAB_SCHEMAS[0]}\"")
    schema = meta.get("schema") or None
    if schema is not None and schema not in AGILAB_SCHEMAS:
        raise fail(f"{path}: [{_META}] schema {schema!r} is not {' or '.join(map(repr, AGILAB_SCHEMAS))}",
                    "import a lab_stages.toml written by AGILAB")
    version = meta.get("version", 1)
    if version != 1:
        raise fail(f"{path}: [{_META}] version {version!r}: this importer reads version 1",
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
    raise fail(f"{where}: depends_on {raw!r} is not a list of stage ids", 'write depends_on = ["stage_id", ...]')


def lab_stages(path: Path, data: dict[str, Any], result: ImportResult) -> list[Stage]:
    """Every stage of every module, in AGILAB's run order, with a unique step id."""
    meta = data.get(_META) if isinstance(data.get(_META), dict) else {}
    stages: list[Stage] = []
    taken: set[str] = set()
    for module, entries in data.items():
        if module == _META or not isinstance(entries, list):
            continue
        if not any(isinstance(entry, dict) and _STAGE_KEYS & entry.keys() for entry in entries):
            continue  # not a module of stages (AGILAB skips these too)
        names: dict[str, str] = {}
        module_stages: list[Stage] = []
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
                    raise fail(f"{where}: id {agilab_id!r} is also the id of {names[agilab_id]}", "give each stage its own id")
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
            module_stages.append(Stage(module, index, entry, where, name, step_id, deps or []))
        if not explicit:  # no stage says what it needs: AGILAB's order is the only order, so keep it
            for previous, stage in pairwise(module_stages):
                stage.deps = [previous.name]
        stages += module_stages
    if not stages:
        raise fail(f"{path}: no AGILAB stages (no module key holds an array of tables with D/Q/C keys)",
                    "import the lab_stages.toml (or lab_steps.toml) of an AGILAB project")
    return stages
