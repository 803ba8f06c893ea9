"""Run records (provenance): typed models, the writer a run keeps up to date, the store that reads them."""

from .model import (
    RUN_SCHEMA,
    AppRecord,
    AuditMismatch,
    AuditRecord,
    ClusterRecord,
    ManagerRecord,
    ModeRecord,
    PartitionRecord,
    PlanRecord,
    RunRecord,
    StepRecord,
    Totals,
    WorkerRecord,
)
from .store import RunStore, iso, new_run_id, read_record
from .writer import RecordWriter

__all__ = [
    "RUN_SCHEMA",
    "AppRecord",
    "AuditMismatch",
    "AuditRecord",
    "ClusterRecord",
    "ManagerRecord",
    "ModeRecord",
    "PartitionRecord",
    "PlanRecord",
    "RecordWriter",
    "RunRecord",
    "RunStore",
    "StepRecord",
    "Totals",
    "WorkerRecord",
    "iso",
    "new_run_id",
    "read_record",
]
