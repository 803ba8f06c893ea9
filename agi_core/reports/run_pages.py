"""The run report's pages (`agi runs report RUN`), in the order the PDF shows them: the summary
(PDF only), ``gantt.png``, ``load.png``, ``dag.png`` (when the plan has dependencies) and
``cache.png`` (when the run used the cache). `RUN_PAGES` is the list; a new page is one line there."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache_page import CachePage
from .drawing import summary_page
from .page import Page, report_folder
from .render import _gantt, _load, _Timeline, read_plan, summary_lines

if TYPE_CHECKING:
    from ..plan.workplan import WorkPlan
    from ..provenance import RunRecord

__all__ = ["RUN_PAGES", "DagPage", "GanttPage", "LoadPage", "RunSubject", "SummaryPage"]


@dataclass(eq=False)
class RunSubject:
    """A run record with its folder, and what several pages derive from it, computed once."""

    record: RunRecord
    run_dir: Path

    @classmethod
    def of(cls, record: RunRecord, run_dir: Path | None = None) -> RunSubject:
        """``run_dir`` defaults to the folder the record's manifest was read from."""
        return cls(record, report_folder(record.path, run_dir, f"run {record.run_id}"))

    @property
    def title(self) -> str:
        return f"{self.record.app.name} run {self.record.run_id}"

    @cached_property
    def timeline(self) -> _Timeline:
        return _Timeline(self.record)

    @cached_property
    def _plan(self) -> tuple[WorkPlan | None, str]:
        return read_plan(self.run_dir, self.record)

    @property
    def plan(self) -> WorkPlan | None:
        """The plan the run saved (``plan.json``), None when it is missing or unreadable."""
        return self._plan[0]

    @property
    def plan_note(self) -> str:
        """Why there is no plan ("" when there is one)."""
        return self._plan[1]


class SummaryPage(Page):
    name, title = "summary", "who, what, where, how long, what failed"

    def draw(self, subject: RunSubject) -> Any:
        return summary_page(summary_lines(subject.record, subject.timeline, subject.plan_note))


class GanttPage(Page):
    name, title, file = "gantt", "partitions per worker over time", "gantt.png"

    def draw(self, subject: RunSubject) -> Any:
        return _gantt(subject.record, subject.timeline)


class LoadPage(Page):
    name, title, file = "load", "planned against actual load per slot", "load.png"

    def draw(self, subject: RunSubject) -> Any:
        return _load(subject.record, subject.timeline, subject.plan, subject.plan_note)


class DagPage(Page):
    name, title, file = "dag", "the plan's dependency graph", "dag.png"

    def applies(self, subject: RunSubject) -> bool:
        return subject.plan is not None and any(p.deps for p in subject.plan.partitions)

    def draw(self, subject: RunSubject) -> Any:
        from ..plan.drawing import plan_figure

        assert subject.plan is not None  # applies() said so
        return plan_figure(subject.plan)

    def pdf_caption(self, subject: RunSubject) -> str:
        return f"{subject.title}: the plan's dependency graph"


#: the run report, page by page (the PDF's order; the PNGs are written in the same order)
RUN_PAGES: tuple[Page, ...] = (
    SummaryPage(),
    GanttPage(),
    LoadPage(),
    DagPage(),
    CachePage(),
)
