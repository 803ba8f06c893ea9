"""`agi cache verify`'s rendering of a `VerifyReport`: the entries that matter, then one summary line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from .output import console, table

if TYPE_CHECKING:
    from ..run.verifying import VerifyReport

__all__ = ["print_verify"]

_COLOURS = {"ok": "green", "match": "green", "corrupt": "red", "untrusted": "red", "mismatch": "red", "failed": "red", "unverifiable": "yellow"}


def print_verify(report: VerifyReport) -> None:
    """One row per entry that was recomputed or is not sound (sound entries only count), then the totals."""
    out = console()
    shown = [e for e in report.entries if e.verdict != "ok"]
    if shown:
        table(f"{len(shown)} entries of {report.app} recomputed or not sound",
              ["key", "partition", "stored by run", "verdict", "note"],
              ([e.key[:12], e.partition, e.run_id, f"[{_COLOURS[e.verdict]}]{e.verdict}[/]", escape(e.note)] for e in shown))
    for entry in shown:
        if entry.verdict == "mismatch":
            out.print(f"[red]mismatch[/] {escape(entry.partition)} ({entry.key[:12]}): cached sha256 {entry.cached}, "
                      f"recomputed sha256 {entry.fresh}")
    sample = (f"; recomputed {report.sample if report.sample < len(report.entries) else 'all'} (seed {report.seed}): "
              f"{report.count('match')} same, {report.count('mismatch')} mismatch, {report.count('failed')} failed, "
              f"{report.count('unverifiable')} not verifiable") if report.sample else ""
    colour = "green" if report.ok else "red"
    out.print(f"[{colour}]{'ok' if report.ok else 'problems'}[/]: {len(report.entries)} entries of {escape(report.app)} in "
              f"{escape(report.root)}, {report.count('corrupt')} corrupt, "
              f"{report.count('untrusted')} untrusted{sample}")
