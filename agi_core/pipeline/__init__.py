"""Pipelines: steps kept in ``lab_steps.toml`` and run in dependency order.

A step is a generated snippet of an `AGI.install / get_distrib / run` call, or a plain Python
script. `load_pipeline` / `save_pipeline` read and write the file; see docs/pipelines.md.
"""

from __future__ import annotations

from .authoring import python_step, refreshed, snippet_step, staleness
from .model import AGI_KINDS, STEPS_SCHEMA, Pipeline, PipelineError, Step, StepKind
from .steps_file import DEFAULT_FILE, load_pipeline, save_pipeline

__all__ = [
    "AGI_KINDS",
    "DEFAULT_FILE",
    "STEPS_SCHEMA",
    "Pipeline",
    "PipelineError",
    "Step",
    "StepKind",
    "load_pipeline",
    "python_step",
    "refreshed",
    "save_pipeline",
    "snippet_step",
    "staleness",
]
