"""What the run report's pages draw (`run_pages` makes them pages): the timeline of a run's
partitions, the Gantt chart, the load chart, the summary text, the plan the run saved.

* The Gantt chart has one row per worker and one bar per computed partition, from its recorded
  start to its end: failures red, retried partitions outlined and hatched, partitions that started
  but never ended (an interrupted or abandoned run) grey up to the run's last sign of life. Cache
  hits did no work: they are not drawn, only counted in the title. Each row is drawn with one
  ``broken_barh`` call per kind of bar, so 100,000 partitions make a handful of artists.
* The load chart compares, per slot, the planned load (``plan.json``: weight / capacity, as
  `WorkPlan.loads` gives it) with the busy time recorded, each as a share of its total so the two
  are comparable.

matplotlib is imported only when drawing (`drawing.matplotlib_classes`), and used through `Figure`
objects on the Agg canvas: pyplot's global state is never touched.
"""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import AgiError
from .drawing import WIDTH, first_line, matplotlib_classes, timestamp

if TYPE_CHECKING:
    from ..plan.workplan import WorkPlan
    from ..provenance import PartitionRecord, RunRecord

__all__ = ["read_plan", "summary_lines"]

MAX_FAILURES = 12  # failures listed on the summary page
MAX_ROW_LABELS = 60  # Gantt rows (workers) and load bars (slots) with their names written

_COLOURS = {"ok": "#4C72B0", "failed": "#D62728", "unfinished": "#9A9A9A", "retried": "#FF8C00"}


def _is_hit(part: PartitionRecord) -> bool:
    return part.status == "cached" or part.cache_hit or part.cache == "hit"


class _Timeline:
    """The record's partitions as bars per worker, and the counts the titles and summary give."""

    def __init__(self, record: RunRecord) -> None:
        parts = record.partitions
        started = [p.start for p in parts if p.start > 0 and not _is_hit(p)]
        ends = [p.end for p in parts if p.end > 0]
        self.t0 = min(started) if started else timestamp(record.started)
        last = max([*ends, *started, timestamp(record.ended), timestamp(record.heartbeat)], default=0.0)
        self.horizon = max(last, self.t0)
        self.hits = self.failed = self.retried = self.unfinished = self.computed = 0
        self.busy: dict[str, float] = defaultdict(float)  # per slot, seconds
        self.bars: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        self.slowest: tuple[float, str] = (0.0, "")
        self.total_busy = 0.0
        for part in parts:
            if part.retries:
                self.retried += 1
            if _is_hit(part):
                self.hits += 1
                continue
            if part.start <= 0:
                continue  # skipped, not run
            row = part.worker or part.slot or part.host or "(unknown worker)"
            if part.end > 0:
                end = max(part.end, part.start)
                kind = "failed" if part.status == "failed" else "ok"
                self.computed += 1
                self.failed += kind == "failed"
            else:
                end, kind = self.horizon, "unfinished"
                self.unfinished += 1
            span = end - part.start
            self.busy[part.slot_that_ran or row] += span  # the slot that did the work, not the planned one
            self.total_busy += span
            if kind != "unfinished" and span >= self.slowest[0]:
                self.slowest = (span, part.id)
            self.bars[row][kind].append((part.start - self.t0, span))
            if part.retries:
                self.bars[row]["retried"].append((part.start - self.t0, span))

    @property
    def span(self) -> float:
        return self.horizon - self.t0


# -- the pictures ------------------------------------------------------------------------------


def _gantt(record: RunRecord, line: _Timeline) -> Any:
    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    from matplotlib.patches import Patch

    rows = sorted(line.bars, key=lambda w: (record.workers[w].host if w in record.workers else "", w))
    height = min(max(3.0, 0.32 * len(rows) + 2.0), 30.0)
    figure = Figure(figsize=(11, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    # A bar is at least a thousandth of the axis wide, so the shortest partitions stay visible.
    least = line.span / 1000 if line.span > 0 else 1e-3
    for y, row in enumerate(rows):
        for kind in ("ok", "failed", "unfinished"):
            bars = line.bars[row].get(kind)
            if bars:
                collection = ax.broken_barh([(x, max(w, least)) for x, w in bars], (y - 0.4, 0.8),
                                            facecolors=_COLOURS[kind], edgecolors="none")
                collection.set_rasterized(True)
        retried = line.bars[row].get("retried")
        if retried:
            collection = ax.broken_barh([(x, max(w, least)) for x, w in retried], (y - 0.45, 0.9), facecolors="none",
                                        edgecolors=_COLOURS["retried"], linewidths=1.2, hatch="///")
            collection.set_rasterized(True)
    ax.set_ylim(len(rows) - 0.5 if rows else 0.5, -0.5)
    if len(rows) <= MAX_ROW_LABELS:
        ax.set_yticks(range(len(rows)), [_row_label(record, row) for row in rows], fontsize=7)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{len(rows)} workers")
    ax.set_xlim(0, max(line.span, least) * 1.01)
    ax.set_xlabel("seconds since the first partition started")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=[Patch(facecolor=_COLOURS["ok"], label="ok"), Patch(facecolor=_COLOURS["failed"], label="failed"),
                       Patch(facecolor="none", edgecolor=_COLOURS["retried"], hatch="///", label="retried"),
                       Patch(facecolor=_COLOURS["unfinished"], label="never ended")],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title(f"{record.app.name} run {record.run_id} ({record.status}): {len(record.partitions)} partitions, "
                 f"{line.computed} computed, {line.hits} cache hits (not drawn), {line.failed} failed, "
                 f"{line.retried} retried, {line.unfinished} never ended", fontsize=9)
    return figure


def _row_label(record: RunRecord, row: str) -> str:
    worker = record.workers.get(row)
    return f"{row} ({worker.slot})" if worker and worker.slot else row


def _load(record: RunRecord, line: _Timeline, plan: WorkPlan | None, plan_note: str) -> Any:
    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    import numpy as np

    planned = plan.loads() if plan is not None else {}
    slots = list(planned) + [s for s in record.plan.slots if s not in planned]
    slots += sorted(s for s in line.busy if s not in slots)
    plan_total = sum(planned.values()) or 1.0
    busy_total = sum(line.busy.values()) or 1.0
    plan_share = np.array([planned.get(s, 0.0) / plan_total * 100 for s in slots])
    busy_share = np.array([line.busy.get(s, 0.0) / busy_total * 100 for s in slots])
    width = min(max(8.0, 0.35 * len(slots) + 3.0), 30.0)
    figure = Figure(figsize=(width, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    x = np.arange(len(slots))
    if plan is not None:
        ax.bar(x - 0.2, plan_share, 0.4, label="planned (weight / capacity)", color="#8FBBD9")
    ax.bar(x + 0.2 if plan is not None else x, busy_share, 0.4, label="actual (busy time recorded)", color="#4C72B0")
    if len(slots) <= MAX_ROW_LABELS:
        ax.set_xticks(x, slots, rotation=45 if len(slots) > 6 else 0, ha="right" if len(slots) > 6 else "center", fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(slots)} slots")
    ax.set_ylabel("share of the run's total, %")
    ax.set_ylim(0, max([*plan_share, *busy_share, 1.0]) * 1.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncols=2)
    ax.grid(axis="y", alpha=0.3)
    note = f"; {plan_note}" if plan_note else ""
    ax.set_title(f"load per slot, planned against actual, each as a share of its total{note}\n"
                 f"busy {line.total_busy:.3f} s in all; {line.hits} cache hits did no work", fontsize=9)
    return figure


# -- the summary page --------------------------------------------------------------------------


def summary_lines(record: RunRecord, line: _Timeline, plan_note: str = "") -> list[str]:
    """The summary page's text: who, what, where, how long, what failed."""
    out = [f"{record.app.name} {record.app.version}  run {record.run_id}", "",
           f"status      {record.status}" + (f": {first_line(record.error)}" if record.error else ""),
           f"started     {record.started or '?'}", f"ended       {record.ended or '(never: ' + record.status + ')'}",
           f"duration    {record.duration_s:.3f} s", f"mode        {record.mode.value} {record.mode.letters}".rstrip(),
           f"executor    {record.executor or '?'}"]
    args = json.dumps(record.args, sort_keys=True, default=str)
    wrapped = textwrap.wrap(args, WIDTH - 12) or ["{}"]
    out += [f"{'args' if k == 0 else '':<12}{text}" for k, text in enumerate(wrapped[:6])]
    if len(wrapped) > 6:
        out.append(" " * 12 + "…")
    out += [f"code        {record.app.code_hash[:16]}  git {record.app.git_commit or '-'}",
            f"settings    {record.settings_hash[:16]}  plan {record.plan.fingerprint[:16]}" + (f" ({plan_note})" if plan_note else ""),
            f"cache       {record.cache or 'not used (--no-cache)'}"]
    if record.resumed_from:
        out.append(f"resumed     from run {record.resumed_from}")
    if record.manager.host:
        out.append(f"manager     {record.manager.host} pid {record.manager.pid}, python {record.manager.python}")
    hosts: dict[str, dict[str, Any]] = {}
    for worker in record.workers.values():
        entry = hosts.setdefault(worker.host or "?", {"workers": 0, "slots": set(), "versions": {}})
        entry["workers"] += 1
        entry["slots"].add(worker.slot)
        entry["versions"].update(worker.versions)
    out += ["", f"hosts ({len(hosts)})"]
    for host, entry in sorted(hosts.items())[:12]:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(entry["versions"].items()))
        out += textwrap.wrap(f"{host}: {entry['workers']} worker(s), {len(entry['slots'])} slot(s); {versions}", WIDTH,
                             initial_indent="  ", subsequent_indent="      ")
    if len(hosts) > 12:
        out.append(f"  … {len(hosts) - 12} more hosts")
    totals = record.totals
    out += ["", "totals", (f"  partitions {totals.partitions}: ok {totals.ok}, cache hits {totals.cached}, failed {totals.failed}, "
                           f"skipped {totals.skipped}, not run {totals.not_run}; re-run after a lost worker {line.retried}, never ended {line.unfinished}")]
    if line.computed:
        out.append(f"  busy {line.total_busy:.3f} s over {line.computed} computed partitions "
                   f"(mean {line.total_busy / line.computed:.4f} s, slowest {line.slowest[1]} {line.slowest[0]:.4f} s)")
    failures = [p for p in record.partitions if p.status == "failed"]
    if failures:
        out += ["", f"failures ({len(failures)})"]
        for part in failures[:MAX_FAILURES]:
            where = "/".join(x for x in (part.slot_that_ran or "", part.host) if x)
            out += textwrap.wrap(f"{part.id}" + (f" on {where}" if where else "") + (f" after {part.retries} retries" if part.retries else "")
                                 + f": {first_line(part.error) or '(no error recorded)'}", WIDTH,
                                 initial_indent="  ", subsequent_indent="      ")[:3]
        if len(failures) > MAX_FAILURES:
            out.append(f"  … {len(failures) - MAX_FAILURES} more (agi runs show {record.run_id} --all)")
    for warning in record.warnings[:5]:
        out += textwrap.wrap(f"warning: {warning}", WIDTH)[:2]
    return out


# -- the plan -------------------------------------------------------------------------------------


def read_plan(run_dir: Path, record: RunRecord) -> tuple[WorkPlan | None, str]:
    from ..plan.workplan import WorkPlan

    path = run_dir / (record.plan.file or "plan.json")
    if not path.is_file():
        return None, f"no {path.name} in the run folder: no planned load"
    try:
        return WorkPlan.load(path), ""
    except AgiError as exc:
        return None, f"{path.name} unreadable ({exc.message.splitlines()[0][:80]}): no planned load"
