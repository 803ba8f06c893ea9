"""The cache page (``cache.png``): what the cache did in one run, for runs that used it.

One bar per cache status (hit, miss, stored, corrupt, untrusted, mismatch, audited: the partition
lines' ``cache`` field), and beside them the time the hits saved and the bytes the run stored,
each saying where its number comes from (`cache_facts`)."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from ..base.quantities import format_size
from .cache_facts import STATUSES, cache_facts, format_seconds, used_cache
from .drawing import matplotlib_classes
from .page import Page

if TYPE_CHECKING:
    from .run_pages import RunSubject

__all__ = ["CachePage"]

_COLOURS = {"hit": "#55A868", "miss": "#8FBBD9", "stored": "#4C72B0", "corrupt": "#D62728", "untrusted": "#C44E52",
            "mismatch": "#FF8C00", "audited": "#8172B2"}


class CachePage(Page):
    name, title, file = "cache", "cache hits, misses, entries stored; time saved, bytes stored", "cache.png"

    def applies(self, subject: RunSubject) -> bool:
        return used_cache(subject.record)

    def draw(self, subject: RunSubject) -> Any:
        Figure, FigureCanvasAgg, _ = matplotlib_classes()
        record = subject.record
        facts = cache_facts(record, subject.run_dir)
        figure = Figure(figsize=(11, 5), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        bars, text = figure.subplots(1, 2, width_ratios=[3, 2])
        counts = [facts.counts.get(status, 0) for status in STATUSES]
        drawn = bars.barh(range(len(STATUSES)), counts, color=[_COLOURS[s] for s in STATUSES])
        bars.bar_label(drawn, padding=3, fontsize=8)
        bars.set_yticks(range(len(STATUSES)), STATUSES, fontsize=8)
        bars.invert_yaxis()
        bars.set_xlim(0, max([*counts, 1]) * 1.15)
        bars.set_xlabel("partitions")
        bars.grid(axis="x", alpha=0.3)
        saved = "n/a" if facts.saved_s is None else format_seconds(facts.saved_s)
        stored = "n/a" if facts.stored_bytes is None else f"{format_size(facts.stored_bytes)} ({facts.stored_bytes} bytes)"
        lines = [f"time saved    {saved}", *_wrapped(facts.saved_how), "", f"bytes stored  {stored}", *_wrapped(facts.stored_how),
                 "", f"run took      {format_seconds(record.duration_s)}", *_wrapped(f"cache {record.cache}")]
        text.set_axis_off()
        text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8, transform=text.transAxes)
        bars.set_title(f"{subject.title}: the cache, {len(record.partitions)} partitions", fontsize=9)
        return figure


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, 48, initial_indent="  ", subsequent_indent="  ")
