"""Pipelines: steps kept in ``lab_steps.toml`` and run in dependency order.

A step is a generated snippet of an `AGI.install / get_distrib / run` call, or a plain Python
script. `load_pipeline` / `save_pipeline` read and write the file, `snippet_step` / `python_step`
make steps, `staleness` says whether one is stale, and `run_pipeline` runs them, leaving a
`PipelineRecord` (``agi.pipeline.v1``) beside the file; inside a step, `step_inputs` gives the
runs of the steps it depends on. See docs/pipelines.md.
"""

from __future__ import annotations

from .agilab import ImportResult, import_agilab
from .authoring import python_step, refreshed, snippet_step, staleness
from .inputs import step_inputs
from .model import AGI_KINDS, STEPS_SCHEMA, Pipeline, PipelineError, Step, StepKind
from .record import PIPELINE_SCHEMA, PipelineRecord, PipelineStore, StepRun
from .runner import DEFAULT_JOBS, PipelineRunError, run_pipeline, select_steps
from .steps_file import DEFAULT_FILE, load_pipeline, save_pipeline

__all__ = [
    "AGI_KINDS",
    "DEFAULT_FILE",
    "DEFAULT_JOBS",
    "ImportResult",
    "PIPELINE_SCHEMA",
    "STEPS_SCHEMA",
    "Pipeline",
    "PipelineError",
    "PipelineRecord",
    "PipelineRunError",
    "PipelineStore",
    "Step",
    "StepKind",
    "StepRun",
    "import_agilab",
    "load_pipeline",
    "python_step",
    "refreshed",
    "run_pipeline",
    "save_pipeline",
    "select_steps",
    "snippet_step",
    "staleness",
    "step_inputs",
]
