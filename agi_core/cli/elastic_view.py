"""The lines `agi run` prints as workers join, leave and partitions move (elastic runs).

>>> from agi_core.base.events import PartitionsMoved, WorkerJoined, WorkerLeft, WorkersJoining
>>> elastic_line(WorkersJoining(joined=1, expected=4, needed=2))
'workers: 1/4 joined (starts at 2)'
>>> elastic_line(WorkerJoined("h-1", "h-1", "10.0.0.2"))
'worker h-1 joined (late) on 10.0.0.2'
>>> elastic_line(WorkerLeft("h-0", "h-0"))
'worker h-0 left'
>>> elastic_line(PartitionsMoved("h-1", "h-0", 16, "not joined"))
'moved 16 partitions h-1 → h-0 (not joined)'
"""

from __future__ import annotations

from ..base.events import Event

__all__ = ["elastic_line"]

#: the kinds of the events this module words: a run of this machine has none, and does not load them
_KINDS = frozenset(("workers_joining", "worker_joined", "worker_left", "partitions_moved"))


def elastic_line(event: Event) -> str | None:
    """The line for an elastic-run event, or None for other events, for a full house (the cluster
    line follows), and for the joining counts a big cluster would print too often (every tenth of
    the map is shown, and the count the run starts at)."""
    if event.kind not in _KINDS:
        return None
    from ..base.events import PartitionsMoved, WorkerJoined, WorkerLeft, WorkersJoining

    if isinstance(event, WorkersJoining):
        step = max(1, event.expected // 10)
        if event.joined >= event.expected or (event.joined % step and event.joined != event.needed):
            return None
        starts = f" (starts at {event.needed})" if event.needed < event.expected else ""
        return f"workers: {event.joined}/{event.expected} joined{starts}"
    if isinstance(event, WorkerJoined):
        return f"worker {event.slot} joined{' (late)' if event.late else ''}" + (f" on {event.host}" if event.host else "")
    if isinstance(event, WorkerLeft):
        return f"worker {event.slot} left" + (f": {event.reason}" if event.reason else "")
    if isinstance(event, PartitionsMoved):
        plural = "s" if event.count != 1 else ""
        return f"moved {event.count} partition{plural} {event.source} → {event.target} ({event.reason})"
    return None
