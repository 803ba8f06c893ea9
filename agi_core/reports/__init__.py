"""Reports: pages drawn from a run's record and plan (`agi runs report RUN`), or from a pipeline
run's record (`agi steps report`), written as one PNG per page and one PDF.

A page is a `page.Page` (``applies``, ``draw``); `run_pages.RUN_PAGES` and
`pipeline.PIPELINE_PAGES` are the lists, `registry` says which list a record gets and which of its
pages apply, `writer` writes them. See docs/reports.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .registry import figure_files, pages_that_apply, write_any_report

if TYPE_CHECKING:
    from ..pipeline import PipelineRecord
    from ..provenance import RunRecord

__all__ = ["figure_files", "pages_that_apply", "write_pipeline_report", "write_report"]


def write_report(record: RunRecord, run_dir: Path | None = None) -> list[Path]:
    """Write a run's report into ``run_dir`` (default: the folder its manifest was read from):
    gantt.png, load.png, dag.png (when the plan has deps), cache.png (when the run used the
    cache), report.pdf. Returns the paths written."""
    return write_any_report(record, run_dir)


def write_pipeline_report(record: PipelineRecord, run_dir: Path) -> list[Path]:
    """Write a pipeline run's report into ``run_dir``: gantt.png, dag.png, report.pdf."""
    return write_any_report(record, run_dir)
