"""The record of one pipeline run (schema ``agi.pipeline.v1``) and the folder that keeps them.

Pipeline runs live beside the pipeline file, one folder per file (two files in one folder never
mix their runs): ``<dir of lab_steps.toml>/pipeline_runs/lab_steps/<id>/`` holds ``pipeline.json`` (this record, rewritten atomically as steps start and finish), each step's
script (``steps/<id>.py``, exactly what ran), its output (``logs/<id>.log``) and its ledger
(``ledger/<id>.jsonl``: the `AGI.run` calls it made, with their run ids and records).

>>> record = PipelineRecord(pipeline_run="p1", file="lab_steps.toml", steps=[StepRun(id="render", kind="run")])
>>> PipelineRecord.model_validate_json(record.model_dump_json(by_alias=True)).steps[0].status
'pending'
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..base.atomic import write_json_atomic
from ..provenance.store import new_run_id
from .model import PipelineError

__all__ = ["PIPELINE_SCHEMA", "RUNS_FOLDER", "PipelineRecord", "PipelineStore", "StepRun", "StepRunRef", "runs_root"]

PIPELINE_SCHEMA = "agi.pipeline.v1"
RUNS_FOLDER = "pipeline_runs"
RECORD_FILE = "pipeline.json"
StepStatus = Literal["pending", "running", "ok", "failed", "skipped", "interrupted", "not_run"]


def runs_root(pipeline_file: Path) -> Path:
    """The folder of ``pipeline_file``'s runs: ``pipeline_runs/<its name without .toml>`` beside it.

    >>> runs_root(Path("/lab/lab_steps.toml")), runs_root(Path("/lab/nightly.steps.toml"))
    (PosixPath('/lab/pipeline_runs/lab_steps'), PosixPath('/lab/pipeline_runs/nightly.steps'))
    """
    return pipeline_file.parent / RUNS_FOLDER / pipeline_file.name.removesuffix(".toml")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class StepRunRef(BaseModel):
    """One `AGI.run` a step made."""

    run_id: str
    app: str = ""
    status: str = ""
    manifest: str = ""


class StepRun(BaseModel):
    """One step in one pipeline run."""

    model_config = ConfigDict(extra="ignore")

    id: str
    kind: str
    app: str | None = None
    deps: list[str] = Field(default_factory=list)
    status: StepStatus = "pending"
    reason: str | None = None  # why it failed, was skipped or not run
    stale: str | None = None  # why it was stale when it ran (--allow-stale)
    reused_from: str | None = None  # --resume: the pipeline run where this step already succeeded
    started: str | None = None
    ended: str | None = None
    duration_s: float = 0.0
    returncode: int | None = None
    runs: list[StepRunRef] = Field(default_factory=list)
    log: str | None = None  # relative to the pipeline run's folder
    script: str | None = None

    @property
    def run_ids(self) -> list[str]:
        return [run.run_id for run in self.runs]


class PipelineRecord(BaseModel):
    """Everything recorded about one pipeline run (``pipeline_runs/<id>/pipeline.json``)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    schema_: str = Field(default=PIPELINE_SCHEMA, alias="schema")
    pipeline_run: str
    file: str
    status: Literal["running", "ok", "failed", "interrupted", "abandoned"] = "running"
    selection: str = "all"  # what was asked: all, the ids, --from ID, --resume RUN
    resumed_from: str | None = None
    jobs: int = 1
    host: str = Field(default_factory=platform.node)
    pid: int = Field(default_factory=os.getpid)
    started: str = Field(default_factory=now_iso)
    ended: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    steps: list[StepRun] = Field(default_factory=list)
    path: str | None = Field(default=None, exclude=True)  # where it was read from

    def step(self, step_id: str) -> StepRun | None:
        return next((step for step in self.steps if step.id == step_id), None)

    def steps_by_id(self) -> dict[str, StepRun]:
        return {step.id: step for step in self.steps}

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.status] = counts.get(step.status, 0) + 1
        return counts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PipelineStore:
    """The pipeline runs of one pipeline file."""

    def __init__(self, pipeline_file: Path) -> None:
        self.file = Path(pipeline_file).absolute()
        self.root = runs_root(self.file)

    def new_run_dir(self) -> tuple[str, Path]:
        run_id = new_run_id()
        run_dir = self.root / run_id
        for sub in ("steps", "logs", "ledger"):
            (run_dir / sub).mkdir(parents=True)
        return run_id, run_dir

    def write(self, record: PipelineRecord) -> None:
        write_json_atomic(self.root / record.pipeline_run / RECORD_FILE, json.loads(record.model_dump_json(by_alias=True)))

    def read(self, path: Path) -> PipelineRecord:
        """One record; a running record whose manager (on this host) is gone reads ``abandoned``."""
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("schema") != PIPELINE_SCHEMA:
                raise PipelineError(f"{path}: not a pipeline record (schema {data.get('schema') if isinstance(data, dict) else None!r})",
                                    fix="remove the folder, or read it with a newer agi_core")
            record = PipelineRecord.model_validate(data)
        except (OSError, json.JSONDecodeError, ValidationError) as exc:
            raise PipelineError(f"{path}: unreadable pipeline record: {exc}", fix="remove the folder") from None
        record.path = str(path)
        if record.status == "running" and record.host == platform.node() and not _alive(record.pid):
            record.status = "abandoned"
            record.error = record.error or f"its manager (pid {record.pid}) is gone"
        return record

    def list(self) -> list[PipelineRecord]:
        """Every readable pipeline run of this file, newest first."""
        records = []
        for path in self.root.glob(f"*/{RECORD_FILE}"):
            try:
                records.append(self.read(path))
            except PipelineError:
                continue
        for path in self.root.parent.glob(f"*/{RECORD_FILE}"):  # runs of agi_core < 0.2: one folder for every file
            try:
                record = self.read(path)
            except PipelineError:
                continue
            if Path(record.file).name == self.file.name:
                records.append(record)
        return sorted(records, key=lambda r: (r.started, r.pipeline_run), reverse=True)

    def find(self, run: str) -> PipelineRecord:
        """A pipeline run by id, unique id prefix, or ``last``."""
        records = self.list()
        if run in ("last", "latest"):
            if not records:
                raise PipelineError(f"no pipeline runs under {self.root}", fix="run the pipeline first: agi steps run")
            return records[0]
        matches = [r for r in records if r.pipeline_run.startswith(run)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise PipelineError(f"no pipeline run {run!r} under {self.root}", fix="`agi steps runs` lists them")
        raise PipelineError(f"pipeline run prefix {run!r} matches {len(matches)} runs", fix="give more characters of the id")

    def run_dir(self, record: PipelineRecord) -> Path:
        return Path(record.path).parent if record.path else self.root / record.pipeline_run

    def last_status(self) -> dict[str, tuple[str, str]]:
        """Step id → (its status, the pipeline run) in the newest pipeline run that ran or reused it."""
        found: dict[str, tuple[str, str]] = {}
        for record in self.list():
            for step in record.steps:
                if step.id not in found and step.status not in ("pending", "not_run"):
                    found[step.id] = (step.status, record.pipeline_run)
        return found
