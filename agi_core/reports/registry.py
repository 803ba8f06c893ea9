"""Which pages make the report of which record: one list per kind of record (a run's, a pipeline
run's), and the questions the CLI and the web UI ask of it: which pages apply, and write them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import AgiError
from .page import Page, Subject
from .writer import write_pages

__all__ = ["ReportKind", "figure_files", "pages_that_apply", "report_kinds", "subject_of", "write_any_report"]


@dataclass(frozen=True)
class ReportKind:
    """The report of one kind of record: the record's class, how to make its subject, its pages."""

    name: str
    record_type: type
    subject: Callable[[Any, Path | None], Subject]
    pages: tuple[Page, ...]


def report_kinds() -> tuple[ReportKind, ...]:
    """Every kind of report (imported when asked: pages import matplotlib only when they draw)."""
    from ..pipeline.record import PipelineRecord
    from ..provenance import RunRecord
    from .pipeline import PIPELINE_PAGES, PipelineSubject
    from .run_pages import RUN_PAGES, RunSubject

    return (ReportKind("run", RunRecord, RunSubject.of, RUN_PAGES),
            ReportKind("pipeline", PipelineRecord, PipelineSubject.of, PIPELINE_PAGES))


def subject_of(record: Any, run_dir: Path | None = None) -> tuple[ReportKind, Subject]:
    """The report kind of ``record`` and its subject (``run_dir``: default, the record's folder)."""
    for kind in report_kinds():
        if isinstance(record, kind.record_type):
            return kind, kind.subject(record, run_dir)
    raise AgiError(f"no report is made of a {type(record).__name__}", fix="pass a run record or a pipeline run's record")


def pages_that_apply(record: Any, run_dir: Path | None = None) -> list[Page]:
    """The pages ``record``'s report has, in order (what `write_any_report` draws)."""
    kind, subject = subject_of(record, run_dir)
    return [page for page in kind.pages if page.applies(subject)]


def figure_files(record: Any, run_dir: Path | None = None, *, written: bool = False) -> list[str]:
    """The PNG names ``record``'s report has, in page order; ``written``: only those in its folder
    now (looked for first, so a page's `applies` runs only for a picture that is there)."""
    kind, subject = subject_of(record, run_dir)
    return [page.file for page in kind.pages
            if page.file and (not written or (subject.run_dir / page.file).is_file()) and page.applies(subject)]


def write_any_report(record: Any, run_dir: Path | None = None) -> list[Path]:
    """Write ``record``'s report (its pages' PNGs, then report.pdf); returns the paths written."""
    kind, subject = subject_of(record, run_dir)
    return write_pages(subject, kind.pages)
