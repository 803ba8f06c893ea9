"""The pipeline step a run belongs to, passed from `agi steps run` to the step's process.

A step is a script run in its own process; whatever `AGI.run` calls it makes (a generated
snippet makes one, a python step may make several) are tagged with the step and the pipeline run,
and announce themselves on the pipeline's ledger so the pipeline record can list their run ids.
The tag travels in one environment variable, as JSON, because the step's code is the user's:
nothing has to be threaded through it.

>>> import os
>>> os.environ[STEP_ENV] = '{"pipeline": "lab_steps.toml", "pipeline_run": "p1", "step": "render"}'
>>> step_from_environment().step
'render'
>>> del os.environ[STEP_ENV]
>>> step_from_environment() is None
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from ..base.errors import AgiError
from ..provenance import RunRecord, StepRecord

__all__ = ["STEP_ENV", "announce", "step_environment", "step_from_environment"]

STEP_ENV = "AGI_PIPELINE_STEP"


def step_environment(step: StepRecord) -> dict[str, str]:
    """The environment variable that tags the runs of a step's process with ``step``."""
    return {STEP_ENV: json.dumps({**step.model_dump(), "ledger": step.ledger})}


def step_from_environment() -> StepRecord | None:
    """The step this process runs for, or None outside a pipeline."""
    text = os.environ.get(STEP_ENV)
    if not text:
        return None
    try:
        return StepRecord.model_validate_json(text)
    except ValidationError as exc:
        raise AgiError(f"environment variable {STEP_ENV} is not a step tag: {exc.errors()[0]['msg']}",
                       fix=f"unset {STEP_ENV} (only `agi steps run` sets it)") from None


def announce(step: StepRecord | None, record: RunRecord, manifest: Path) -> None:
    """Append this run's id, status and record path to the step's ledger (one JSON line; the
    pipeline keeps the last line per run)."""
    if step is None or not step.ledger:
        return
    line = json.dumps({"run_id": record.run_id, "app": record.app.name, "status": record.status, "manifest": str(manifest)})
    with open(step.ledger, "a", encoding="utf-8") as ledger:  # one short write: lines from parallel runs do not mix
        ledger.write(line + "\n")
