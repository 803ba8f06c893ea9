"""The pipeline report's pages (`agi steps report`): a summary (PDF only), ``gantt.png`` (one row
per step, from its start to its end, coloured by status) and ``dag.png`` (the steps and their deps,
coloured by status, in dependency layers). `PIPELINE_PAGES` is the list; `writer` writes them.

Drawn like the run report's pages: `Figure` objects on the Agg canvas, no pyplot state.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .drawing import WIDTH, first_line, matplotlib_classes, summary_page, timestamp
from .page import Page, report_folder

if TYPE_CHECKING:
    from ..pipeline import PipelineRecord

__all__ = ["PIPELINE_PAGES", "PipelineSubject"]

_STATUS_COLOURS = {"ok": "#4C72B0", "failed": "#D62728", "skipped": "#C0C0C0", "interrupted": "#FF8C00",
                   "running": "#9A9A9A", "pending": "#E0E0E0", "not_run": "#E0E0E0", "reused": "#8FBC8F"}


def _status(step: Any) -> str:
    return "reused" if step.reused_from else step.status


def _gantt(record: PipelineRecord) -> Any:
    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    steps = record.steps
    figure = Figure(figsize=(11.69, max(3.0, 1.2 + 0.35 * len(steps))), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    origin = timestamp(record.started)
    for row, step in enumerate(steps):
        start = timestamp(step.started)
        status = _status(step)
        if start and origin:
            end = timestamp(step.ended) or start + step.duration_s
            ax.broken_barh([(start - origin, max(end - start, 1e-3))], (row - 0.4, 0.8), facecolors=_STATUS_COLOURS.get(status, "#777"))
        label = status if status != "ok" else f"{step.duration_s:.1f} s"
        ax.text(0, row, f"  {label}", va="center", fontsize=7)
    ax.set_yticks(range(len(steps)), [step.id for step in steps], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the pipeline run started")
    ax.grid(axis="x", alpha=0.3)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(record.counts().items()))
    ax.set_title(f"pipeline run {record.pipeline_run}: {record.status} in {record.duration_s:.1f} s ({counts})", fontsize=9)
    return figure


def _dag(record: PipelineRecord) -> Any:
    import networkx as nx

    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    graph = nx.DiGraph()
    graph.add_nodes_from(step.id for step in record.steps)
    graph.add_edges_from((dep, step.id) for step in record.steps for dep in step.deps if dep in graph)
    for layer, nodes in enumerate(nx.topological_generations(graph)):
        for node in nodes:
            graph.nodes[node]["layer"] = layer
    positions = nx.multipartite_layout(graph, subset_key="layer")
    status = {step.id: _status(step) for step in record.steps}
    figure = Figure(figsize=(11.69, 8.27), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    nx.draw_networkx(graph, positions, ax=ax, node_color=[_STATUS_COLOURS.get(status[n], "#777") for n in graph],
                     node_size=900, font_size=8, arrowsize=14, edge_color="#555")
    for name in sorted(set(status.values())):
        ax.scatter([], [], color=_STATUS_COLOURS.get(name, "#777"), label=name)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.set_axis_off()
    ax.set_title(f"pipeline run {record.pipeline_run}: steps and their deps, by status", fontsize=9)
    return figure


def summary_lines(record: PipelineRecord) -> list[str]:
    """The summary page's text: the pipeline run, then one block per step."""
    out = [f"pipeline run {record.pipeline_run}", "",
           f"file        {record.file}",
           f"status      {record.status}" + (f": {first_line(record.error)}" if record.error else ""),
           f"selection   {record.selection}" + (f" (resumed from {record.resumed_from})" if record.resumed_from else ""),
           f"started     {record.started}", f"ended       {record.ended or '(never: ' + record.status + ')'}",
           f"duration    {record.duration_s:.1f} s   at most {record.jobs} steps at a time",
           f"manager     {record.host} pid {record.pid}", "", f"steps ({len(record.steps)})"]
    for step in record.steps:
        what = f"{step.kind} {step.app}" if step.app else step.kind
        deps = f" after {', '.join(step.deps)}" if step.deps else ""
        out.append(f"  {step.id:<20} {_status(step):<11} {step.duration_s:7.1f} s  {what}{deps}")
        for run in step.runs:
            out.append(f"      run {run.run_id} ({run.app}): {run.status}")
        notes = [step.reason] if step.reason and step.status != "ok" else []
        notes += [f"stale when it ran: {step.stale}"] if step.stale else []
        for note in notes:
            out += textwrap.wrap(first_line(note), WIDTH, initial_indent="      ", subsequent_indent="      ")[:2]
    return out


@dataclass(eq=False)
class PipelineSubject:
    """A pipeline run's record with the folder its report goes into."""

    record: PipelineRecord
    run_dir: Path

    @classmethod
    def of(cls, record: PipelineRecord, run_dir: Path | None = None) -> PipelineSubject:
        """``run_dir`` defaults to the folder the record's ``pipeline.json`` was read from."""
        return cls(record, report_folder(record.path, run_dir, f"pipeline run {record.pipeline_run}"))

    @property
    def title(self) -> str:
        return f"pipeline run {self.record.pipeline_run}"


class PipelineSummaryPage(Page):
    name, title = "summary", "the pipeline run, then one block per step"

    def draw(self, subject: PipelineSubject) -> Any:
        return summary_page(summary_lines(subject.record))


class PipelineGanttPage(Page):
    name, title, file = "gantt", "steps over time, by status", "gantt.png"

    def draw(self, subject: PipelineSubject) -> Any:
        return _gantt(subject.record)


class PipelineDagPage(Page):
    name, title, file = "dag", "the steps and their deps, by status", "dag.png"

    def draw(self, subject: PipelineSubject) -> Any:
        return _dag(subject.record)

    def pdf_caption(self, subject: PipelineSubject) -> str:
        return f"{subject.title}: steps and deps"


#: the pipeline report, page by page (the PDF's order)
PIPELINE_PAGES: tuple[Page, ...] = (
    PipelineSummaryPage(),
    PipelineGanttPage(),
    PipelineDagPage(),
)
