"""The run record as typed data: `RunRecord` (schema ``agi.run.v2``) and its parts.

Readers and writers go through these models, never through dicts. Version 1 records (the first
schema) read into the same models: every field added since has a default.

>>> record = RunRecord(run_id="20261123-101500-abc123", status="ok", app=AppRecord(name="demo"))
>>> RunRecord.model_validate_json(record.model_dump_json()).app.name
'demo'
"""

# No `from __future__ import annotations` here: pydantic would compile every field's annotation from
# its string (typing.ForwardRef) at each start of `agi`; these models name only what is imported.

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..base.factories import empty_list

__all__ = [
    "READABLE_SCHEMAS",
    "RUN_SCHEMA",
    "AppRecord",
    "AuditMismatch",
    "AuditRecord",
    "ClusterRecord",
    "InFlightRecord",
    "ManagerRecord",
    "ModeRecord",
    "PartitionRecord",
    "PlanRecord",
    "RunRecord",
    "StepRecord",
    "Totals",
    "WorkerRecord",
]

RUN_SCHEMA = "agi.run.v2"
READABLE_SCHEMAS = ("agi.run.v1", RUN_SCHEMA)

RunStatus = Literal["running", "ok", "failed", "interrupted", "abandoned", "unreadable"]


class _Model(BaseModel):
    # Unknown keys are ignored, so records from newer versions of agi_core still read.
    model_config = ConfigDict(extra="ignore", defer_build=True)


class AppRecord(_Model):
    name: str
    version: str = ""
    code_hash: str = ""
    git_commit: str | None = None
    project_dir: str = ""


class ModeRecord(_Model):
    value: int = 0
    letters: str = ""


class PlanRecord(_Model):
    fingerprint: str = ""
    partitions: int = 0
    slots: list[str] = Field(default_factory=empty_list)
    file: str = "plan.json"


class ClusterRecord(_Model):
    """Where a cluster run ran: the Dask scheduler, its dashboard, whether it was a warm cluster."""

    scheduler: str
    dashboard: str | None = None
    warm: bool = False
    note: str = ""
    backend: str = ""
    never_joined: list[str] = Field(default_factory=empty_list)  # Dask names of workers that never joined (`[cluster] join_timeout`)
    never_joined_report: str = ""  # the backend's report on them (where each ran, its log's end)
    #: installs the run made for workers that joined with other code ([cluster] install = "auto"):
    #: "TARGET: installed, for worker(s) NAMES, which ran WHAT" (`executors.join_install`)
    installed: list[str] = Field(default_factory=empty_list)


class ManagerRecord(_Model):
    """The process that ran the run: with the heartbeat, how a dead manager is told from a slow one."""

    host: str = ""
    pid: int = 0
    python: str = ""
    platform: str = ""


class WorkerRecord(_Model):
    """One worker process that ran partitions: where, which kernels, its versions and capabilities."""

    host: str = ""
    slot: str = ""
    kernel: str = ""
    device: str = ""
    job_id: str | None = None  # the batch job (Slurm) it ran in; None outside one
    versions: dict[str, str] = Field(default_factory=dict)  # python, agi_core, dask, distributed, the app
    capabilities: dict[str, Any] = Field(default_factory=dict)  # cores, memory, gpus, resources


class PartitionRecord(_Model):
    """What happened to one partition, and where its result and output files are."""

    id: str
    slot: str | None = None
    status: str = "not run"  # ok, failed, skipped, cached, not run
    worker: str = ""
    host: str = ""
    start: float = 0.0
    end: float = 0.0
    duration_s: float = 0.0
    kernel: str = ""
    device: str = ""
    #: how often it started before on a worker that was lost: its work() ran 1 + retries times
    retries: int = 0
    #: the slot whose worker ran it, when not ``slot`` (the planned one): a lost worker's task moved there
    ran_slot: str | None = None
    cache_hit: bool = False
    cache: str | None = None  # hit, miss, stored, corrupt, untrusted, audited, mismatch; None: the run did not use the cache
    cache_key: str | None = None
    error: str | None = None
    note: str = ""
    result_location: str | None = None  # "run result" (returned to the manager) or a cache path
    outputs: list[str] = Field(default_factory=empty_list)  # files it declared with ctx.output(), relative to out/
    job_id: str | None = None  # the batch job (Slurm) whose worker ran it, on node `host`; None outside one
    #: files work() read through Python that are not among its declared inputs: the cache cannot see them change
    undeclared_reads: list[str] = Field(default_factory=empty_list)

    @property
    def slot_that_ran(self) -> str | None:
        """The slot whose worker ran it: the planned ``slot`` unless its task moved (``ran_slot``)."""
        return self.ran_slot or self.slot


class InFlightRecord(_Model):
    """A partition running now (read from a running run's ``in_flight.json``, never stored in the manifest)."""

    id: str
    slot: str = ""
    host: str = ""
    pid: int = 0
    since: str = ""


class Totals(_Model):
    partitions: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    cached: int = 0
    not_run: int = 0


class AuditMismatch(_Model):
    """An audited cache hit whose recomputed result differs from the cached one."""

    partition: str
    cached: str  # the SHA-256 of the cached result (its entry's header)
    fresh: str  # the SHA-256 of the recomputed result (which replaced the entry)


class AuditRecord(_Model):
    """What ``--audit`` (``[cache] audit``) did: the share of the hits recomputed, the seed that
    chose them (`agi_core.cache.audit.audit_sample` chooses the same ones again), and the verdicts."""

    fraction: float = 0.0
    seed: int = 0
    hits: int = 0  # cache hits found
    chosen: int = 0  # of them, recomputed and compared
    matched: int = 0  # same result (cache "audited")
    mismatched: list[AuditMismatch] = Field(default_factory=empty_list)  # another result (cache "mismatch")
    unchecked: int = 0  # chosen, but not compared: the recomputation failed, or ran other kernels


class StepRecord(_Model):
    """The pipeline step a run came from (``agi steps run`` passes it to the step's process)."""

    pipeline: str = ""  # the lab_steps.toml file
    pipeline_run: str = ""  # the pipeline run's id
    step: str = ""  # the step's id
    ledger: str | None = Field(default=None, exclude=True)  # where the run announces itself to the pipeline


class RunRecord(_Model):
    """Everything recorded about one run (``<share>/runs/<app>/<run_id>/manifest.json``)."""

    schema_: str = Field(default=RUN_SCHEMA, alias="schema")
    run_id: str
    status: RunStatus = "running"
    app: AppRecord
    request: dict[str, Any] = Field(default_factory=dict)  # the RunRequest, as JSON
    args: dict[str, Any] = Field(default_factory=dict)
    mode: ModeRecord = Field(default_factory=ModeRecord)
    settings_hash: str = ""
    settings_file: str = ""
    plan: PlanRecord = Field(default_factory=PlanRecord)
    executor: str = ""
    cluster: ClusterRecord | None = None
    manager: ManagerRecord = Field(default_factory=ManagerRecord)
    workers: dict[str, WorkerRecord] = Field(default_factory=dict)
    kernel_note: str | None = None
    warnings: list[str] = Field(default_factory=empty_list)  # things the user should know, e.g. undeclared outputs
    reruns: int = 0  # partitions whose work() ran again after a lost worker (their ``retries``)
    cache: str | None = None  # the cache folder the run used; None: --no-cache
    resumed_from: str | None = None  # the run this one resumed
    refreshed: list[str] = Field(default_factory=empty_list)  # partitions recomputed on request (--refresh)
    audit: AuditRecord | None = None  # the cache audit (--audit); None: no audit
    step: StepRecord | None = None  # the pipeline step this run came from
    started: str = ""
    ended: str | None = None
    duration_s: float = 0.0
    heartbeat: str | None = None  # last sign of life of a running manager (read from its heartbeat file)
    in_flight: list[InFlightRecord] | None = Field(default=None, exclude=True)  # a running run's partitions running now
    totals: Totals = Field(default_factory=Totals)
    error: str | None = None
    out_dir: str = ""
    partitions: list[PartitionRecord] = Field(default_factory=empty_list)
    path: str | None = Field(default=None, exclude=True)  # where it was read from (not written)

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)

    def dump_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=1)
