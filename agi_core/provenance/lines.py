"""A partition's line in the run record: the fields of its `PartitionRecord`, as JSON.

Made where the partition ran (a pool slot, a Dask worker), right after it ran: the workers are
idle while the manager takes in 100,000 outcomes, and the manager then only stores bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

if TYPE_CHECKING:
    from ..executors import Outcome

__all__ = ["RETURNED", "cached_line", "not_run_line", "partition_fields", "partition_line"]

#: where a partition's result is when it came back to the manager and is not in the cache
RETURNED = "run result"


def partition_fields(outcome: Outcome) -> dict[str, Any]:
    """One outcome as the fields of its `PartitionRecord` (plain data: fast to log as JSON).
    Fields at their default (no error, no retries, no outputs, ...) are left out: readers fill
    them in, and a record of 100,000 partitions stays smaller and faster to write."""
    fields = {"id": outcome.id, "slot": outcome.slot, "status": outcome.status, "worker": outcome.worker, "host": outcome.host,
              "start": outcome.start, "end": outcome.end, "duration_s": max(0.0, outcome.end - outcome.start),
              "kernel": outcome.kernel, "device": outcome.device}
    if outcome.status in ("ok", "cached"):
        fields["result_location"] = outcome.location or RETURNED
    if outcome.status == "cached":
        fields["cache_hit"] = True
    if outcome.cache:
        fields["cache"] = outcome.cache
    if outcome.key:
        fields["cache_key"] = outcome.key
    if outcome.retries:
        fields["retries"] = outcome.retries
    if outcome.ran_slot:
        fields["ran_slot"] = outcome.ran_slot
    if outcome.error:
        fields["error"] = outcome.error
    if outcome.note:
        fields["note"] = outcome.note
    if outcome.job_id:
        fields["job_id"] = outcome.job_id
    if outcome.outputs:
        fields["outputs"] = outcome.outputs
    if outcome.undeclared:
        fields["undeclared_reads"] = outcome.undeclared
    return fields


def partition_line(outcome: Outcome) -> bytes:
    """The outcome's record line (JSON, one line)."""
    return to_json(partition_fields(outcome), fallback=str)


def cached_line(pid: str, slot: str, kernel: str, location: str, key: str, note: str, outputs: tuple[str, ...] = ()) -> bytes:
    """The record line of a partition taken from the cache: what `partition_line` makes of its
    outcome, without the generic field-by-field checks (a re-run of 100,000 partitions makes
    100,000 of them before anything runs).

    >>> from agi_core.executors import Outcome
    >>> hit = Outcome("p1", "s0", "cached", note="from the cache", cache="hit", key="ab", location="/c/x.pack", kernel="python")
    >>> cached_line("p1", "s0", "python", "/c/x.pack", "ab", "from the cache") == partition_line(hit)
    True
    """
    fields = {"id": pid, "slot": slot, "status": "cached", "worker": "", "host": "", "start": 0.0, "end": 0.0, "duration_s": 0.0,
              "kernel": kernel, "device": "", "result_location": location or RETURNED, "cache_hit": True, "cache": "hit",
              "cache_key": key}
    if note:
        fields["note"] = note
    if outputs:
        fields["outputs"] = outputs
    return to_json(fields, fallback=str)


def not_run_line(pid: str, slot: str | None) -> bytes:
    """The record line of a partition that never ran (the run failed or was interrupted first)."""
    return to_json({"id": pid, "slot": slot, "status": "not run"})
