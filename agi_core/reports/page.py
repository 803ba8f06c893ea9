"""What a report page is: one figure drawn from a record, for the records it applies to.

A report is a list of pages per kind of record (`registry`); the one writer (`writer.write_pages`)
draws each page that applies, writes its PNG when it has a file name, and puts every page into the
PDF in list order. A new page is one subclass of `Page` and one line in its list.

A page reads its record through a *subject*: the record with its folder, and what several pages
derive from it (the run's timeline, its plan) computed once per report (`run_pages.RunSubject`,
`pipeline.PipelineSubject`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

__all__ = ["Page", "Subject", "report_folder"]


def report_folder(record_path: str | None, run_dir: Path | None, what: str) -> Path:
    """Where a record's report goes: ``run_dir`` if given, else the folder the record was read from."""
    if run_dir is not None:
        return Path(run_dir)
    if not record_path:
        from ..base.errors import AgiError

        raise AgiError(f"{what}: no folder to write the report into", fix="pass run_dir")
    return Path(record_path).parent


class Subject(Protocol):
    """What a page draws from: a record, the folder its report goes into, the report's title."""

    record: Any
    run_dir: Path

    @property
    def title(self) -> str: ...


class Page:
    """One page of a report. Subclasses set the class attributes (constants, never mutated) and
    override `draw`, and `applies` when the page needs something not every record has."""

    #: short id, unique in its list ("gantt", "cache")
    name: ClassVar[str] = ""
    #: what the page shows, in a few words (the UI's caption, `agi runs report --json`)
    title: ClassVar[str] = ""
    #: the PNG it writes into the run folder; None: the page is in the PDF only (the summary)
    file: ClassVar[str | None] = None

    def applies(self, subject: Subject) -> bool:
        """Whether this record has what the page needs (default: every record has)."""
        return True

    def draw(self, subject: Subject) -> Any:
        """The page as a matplotlib ``Figure`` on the Agg canvas (`drawing.matplotlib_classes`)."""
        raise NotImplementedError

    def pdf_caption(self, subject: Subject) -> str | None:
        """None: the PDF gets the figure itself. A caption: the PDF gets the written PNG fitted on
        an A4 page under it instead (for figures that can be huge: a DAG of 100,000 nodes)."""
        return None

    def __repr__(self) -> str:
        return f"<page {self.name}: {self.file or 'PDF only'}>"
