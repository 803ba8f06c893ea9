"""`agi runs show`'s rendering of one `RunRecord`: a header, a summary by slot, the failures in
full and the slowest partitions; every partition's row only when asked (a run may have 100,000).
With ``--why`` / ``--dump-keys``: why a partition was computed, and what its cache key was made of.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from ..provenance.reruns import reruns_phrase
from .output import console, table

if TYPE_CHECKING:
    from ..provenance import PartitionRecord, RunRecord

__all__ = ["MAX_FAILURES", "MAX_SLOTS", "SLOWEST", "STATUS_COLOURS", "print_key_dump", "print_record", "print_why", "seconds",
           "status_text"]

MAX_FAILURES = 20  # failures shown in full (all of them with --all)
MAX_SLOTS = 40  # slots in the summary table (the busiest; all of them with --all)
SLOWEST = 10  # the slowest partitions listed

STATUS_COLOURS = {"ok": "green", "failed": "red", "interrupted": "yellow", "abandoned": "magenta", "running": "cyan",
                  "unreadable": "red", "skipped": "yellow", "cached": "cyan", "not run": "dim"}
_COUNTED = ("ok", "failed", "skipped", "cached", "not run")


def seconds(value: float) -> str:
    """A duration for people: ``0.4 ms``, ``12.3 ms``, ``1.25 s``, ``2 min 5 s``."""
    if value < 1:
        return f"{value * 1000:.1f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def status_text(status: str) -> str:
    """A run's or a partition's status in its colour (rich markup)."""
    return f"[{STATUS_COLOURS.get(status, 'white')}]{escape(status)}[/]"


@dataclass
class _SlotSummary:
    slot: str
    host: str = ""
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTED, 0))
    total_s: float = 0.0
    max_s: float = 0.0

    def add(self, part: PartitionRecord) -> None:
        self.host = self.host or part.host
        self.counts[part.status] = self.counts.get(part.status, 0) + 1
        self.total_s += part.duration_s
        self.max_s = max(self.max_s, part.duration_s)

    def row(self) -> list[Any]:
        partitions = sum(self.counts.values())
        return [self.slot, self.host, partitions, *(self.counts[s] or "" for s in _COUNTED),
                seconds(self.total_s), seconds(self.max_s)]


def print_record(record: RunRecord, *, all_partitions: bool = False) -> None:
    """Print ``record`` for a person: see the module docstring. ``all_partitions`` adds every
    partition's row, every slot and every failure."""
    _header(record)
    _running_now(record)
    _audit(record, all_partitions)
    parts = record.partitions
    if parts:
        _summary(record, parts, all_partitions)
        _failures([p for p in parts if p.status == "failed"], all_partitions)
        _slowest(parts)
        if all_partitions:
            _all_rows(parts)
    if record.out_dir:
        console().print(f"out: {escape(record.out_dir)}")
    console().print(f"record: {escape(str(record.path))}")


def _header(record: RunRecord) -> None:
    out = console()
    mode = record.mode
    out.print(f"[bold]{escape(record.app.name)}[/] run {record.run_id}: [bold]{status_text(record.status)}[/]  "
              f"mode {mode.value} ({mode.letters or '-'})  {f'{record.duration_s:.2f} s' if record.ended else 'not finished'}"
              + (f"  executor {record.executor}" if record.executor else ""))
    if record.status == "abandoned":
        why = record.error or "its manager stopped without finishing the record"
        out.print(f"[magenta]{escape(why if why.startswith('abandoned') else 'abandoned: ' + why)}[/]")
    elif record.error:
        out.print(f"[red]error:[/] {escape(record.error.rstrip())}")
    out.print(f"started {record.started or '-'}  ended {record.ended or '-'}"
              + (f"  last heartbeat {record.heartbeat}" if record.status in ("running", "abandoned") and record.heartbeat else ""))
    app = record.app
    out.print(f"app version {app.version or '-'}  code {app.code_hash[:12] or '-'}  git {(app.git_commit or '-')[:12]}")
    out.print(f"args: {escape(repr(record.args))}")
    out.print(f"settings hash {record.settings_hash[:12] or '-'}  plan {record.plan.fingerprint[:12] or '-'}")
    cluster = record.cluster
    if cluster is not None:
        from .run_view import cluster_line

        out.print(escape(cluster_line(cluster.scheduler, cluster.dashboard, cluster.warm, cluster.note)))
    if record.kernel_note:
        out.print(f"kernels: {escape(record.kernel_note)}")
    for warning in record.warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}")


def _running_now(record: RunRecord) -> None:
    """A running run: the partitions in flight, longest first, with where and for how long."""
    if record.status != "running" or not record.in_flight:
        return
    out = console()
    now = time.time()
    since = {item.id: _epoch(item.since) for item in record.in_flight}
    out.print(f"in flight: {len(record.in_flight)} partition{'s' if len(record.in_flight) > 1 else ''}")
    for item in sorted(record.in_flight, key=lambda item: since[item.id])[:10]:
        out.print(f"  {escape(item.id)}  slot {escape(item.slot)}  host {escape(item.host)}  pid {item.pid}  "
                  f"running for {seconds(max(0.0, now - since[item.id]))}")


def _epoch(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return time.time()


def _audit(record: RunRecord, show_all: bool) -> None:
    """The cache audit (``--audit``): how many hits were recomputed, with which seed, what came out,
    and the mismatches with both digests (the first `MAX_FAILURES`, all with ``show_all``)."""
    audit = record.audit
    if audit is None:
        return
    bad = audit.mismatched
    colour = "red" if bad else "green"
    console().print(f"cache audit: {audit.chosen} of {audit.hits} hits recomputed "
                    f"(--audit {audit.fraction:g}, seed {audit.seed}): [{colour}]{audit.matched} same, {len(bad)} mismatch{'es' if len(bad) != 1 else ''}[/]"
                    + (f", {audit.unchecked} not compared" if audit.unchecked else ""))
    if bad:
        plural = "es" if len(bad) != 1 else ""
        table(f"[red]{len(bad)} cache mismatch{plural}[/] (the recomputed result was used and replaced the entry)",
              ["partition", "cached sha256", "recomputed sha256"],
              ([m.partition, m.cached, m.fresh] for m in (bad if show_all else bad[:MAX_FAILURES])))
        if not show_all and len(bad) > MAX_FAILURES:
            console().print(f"… and {len(bad) - MAX_FAILURES} more mismatches (--all shows every one)")


def _summary(record: RunRecord, parts: list[PartitionRecord], all_slots: bool) -> None:
    """One row per slot, crediting the slot whose worker ran each partition (not the planned one,
    when a lost worker's task moved)."""
    slots: dict[str, _SlotSummary] = {}
    everything = _SlotSummary("all")
    for part in parts:
        slot = part.slot_that_ran or "-"
        slots.setdefault(slot, _SlotSummary(slot)).add(part)
        everything.add(part)
    rows = sorted(slots.values(), key=lambda s: s.slot)
    hidden = 0
    if not all_slots and len(rows) > MAX_SLOTS:
        busiest = sorted(rows, key=lambda s: s.total_s, reverse=True)[:MAX_SLOTS]
        hidden, rows = len(rows) - MAX_SLOTS, sorted(busiest, key=lambda s: s.slot)
    totals = record.totals
    title = (f"{totals.partitions} partitions: {totals.ok} ok, {totals.failed} failed, {totals.skipped} skipped, "
             f"{totals.cached} cached, {totals.not_run} not run")
    rerun = sum(1 for p in parts if p.retries)
    if rerun:
        title += f"; [yellow]{reruns_phrase(rerun)}[/]"
    body = [s.row() for s in rows] + ([["all", "", *everything.row()[2:]]] if len(slots) > 1 else [])
    table(title, ["slot", "host", "parts", *_COUNTED, "total", "max"], body)
    if hidden:
        console().print(f"… {hidden} more slots (--all shows every one)")
    moved = sum(1 for p in parts if p.ran_slot)
    if moved:
        plural = "s" if moved > 1 else ""
        console().print(f"{moved} partition{plural} ran on another slot than planned (a lost worker's task moved): "
                        "each is counted where it ran")


def _failures(failed: list[PartitionRecord], show_all: bool) -> None:
    if not failed:
        return
    out = console()
    shown = failed if show_all else failed[:MAX_FAILURES]
    out.print(f"[bold red]{len(failed)} failed {'partition' if len(failed) == 1 else 'partitions'}[/]"
              + (f" (the first {len(shown)})" if len(shown) < len(failed) else ""))
    for part in shown:
        out.print(f"[red]{escape(part.id)}[/] failed on slot {escape(part.slot_that_ran or '-')} host {escape(part.host or '-')}"
                  + (f" after {part.retries} retries" if part.retries else "") + ":")
        out.print(escape((part.error or "(no error recorded)").rstrip()))
    if len(shown) < len(failed):
        out.print(f"… and {len(failed) - len(shown)} more failed (--all shows every one; --json the whole record)")


def _slowest(parts: Iterable[PartitionRecord]) -> None:
    done = sorted((p for p in parts if p.duration_s > 0), key=lambda p: p.duration_s, reverse=True)[:SLOWEST]
    if not done:
        return
    table(f"slowest {len(done)}", ["id", "status", "slot", "host", "kernel", "device", "duration"], (
        [p.id, status_text(p.status), p.slot_that_ran, p.host, p.kernel, p.device, seconds(p.duration_s)] for p in done))


def _all_rows(parts: list[PartitionRecord]) -> None:
    table(f"{len(parts)} partitions", ["id", "status", "slot", "worker", "host", "kernel", "device", "duration", "outputs"], (
        [p.id, status_text(p.status), p.slot_that_ran, p.worker, p.host, p.kernel, p.device,
         seconds(p.duration_s) if p.status in ("ok", "failed") else "", ", ".join(p.outputs)] for p in parts))
    _reruns([p for p in parts if p.retries])
    readers = [p for p in parts if p.undeclared_reads]
    if readers:
        table(f"{len(readers)} partitions read files not in their inputs (the cache cannot see them change)",
              ["id", "files read, not declared"], ([p.id, ", ".join(p.undeclared_reads)] for p in readers))


def _reruns(rerun: list[PartitionRecord]) -> None:
    """The partitions whose work() ran again after a lost worker: how often, planned where, ran where."""
    if rerun:
        table(f"[yellow]{reruns_phrase(len(rerun))}[/] (work() ran 1 + retries times)",
              ["id", "status", "retries", "planned slot", "ran on slot", "worker", "host"],
              ([p.id, status_text(p.status), p.retries, p.slot, p.slot_that_ran, p.worker, p.host] for p in rerun))


def print_why(data: dict[str, Any]) -> None:
    """``agi runs show RUN --why ID``: the partition's status and key in the run, the earlier
    run it is compared with, and each reason its key changed (or why an unchanged key was computed)."""
    out = console()
    pid = escape(data["partition"])
    cache = data["cache"] or "not used"
    out.print(f"[bold]{pid}[/] in {escape(data['app'])} run {data['run_id']}: {status_text(data['status'])}, cache {escape(cache)}"
              + ("  (refreshed on request)" if data.get("refreshed") else ""))
    out.print(f"key {data['key'] or '-'}")
    if data.get("note"):
        out.print(f"note: {escape(data['note'])}")
    earlier = data.get("earlier")
    if earlier:
        out.print(f"compared with run {earlier['run_id']} ({escape(earlier['status'])}; there {pid} was "
                  f"{escape(str(earlier['partition_status'] or '-'))}, cache {escape(str(earlier['partition_cache'] or 'not used'))})"
                  f", key {earlier['key']}")
    if data.get("reasons"):
        out.print(f"[bold]why its key changed[/] (since run {earlier['run_id']}):")
        for reason in data["reasons"]:
            text = reason.lstrip()
            out.print(f"  {reason[: len(reason) - len(text)]}- {escape(text)}")
    out.print(f"[bold]verdict:[/] {escape(data['verdict'])}")


def print_key_dump(run_id: str, dump: dict[str, Any]) -> None:
    """``agi runs show RUN --dump-keys``: what each partition's cache key was made from (as
    Nextflow's ``-dump-hashes``): the parts every key shares, then per partition its key, the args
    it reads with their values, its payload fingerprint and its dependencies' keys."""
    out = console()
    out.print(f"[bold]cache keys of run {run_id}[/]: format {dump['format']}, code {dump['code']}, kernel {escape(dump['kernel'])}")
    for pid, part in dump["partitions"].items():
        out.print(f"[bold]{escape(pid)}[/] {part['key']}")
        if part["reads"] is None:
            out.print("  reads: all args")
        for name, value in part["args"].items():
            out.print(f"  args.{escape(name)} = {escape(repr(value))}")
        out.print(f"  payload {part['payload']}")
        for dep, key in part["deps"].items():
            out.print(f"  dep {escape(dep)} {key}")
