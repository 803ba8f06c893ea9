"""`Event`, the base of every typed event, and `EventSink`: what `events` and `cluster_events` share.

>>> seen = []
>>> wants_partitions(seen.append), wants_partitions(ignore)
(True, False)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["Event", "EventSink", "ignore", "wants_partitions"]


@dataclass(frozen=True)
class Event:
    """Base of every event; ``kind`` names it in JSON."""

    kind: ClassVar[str] = "event"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The sink used when nobody listens."""


def wants_partitions(sink: EventSink) -> bool:
    """Whether ``sink`` wants a `PartitionDone` per partition: not `ignore`, and not a sink whose
    ``partition_events`` attribute is False (e.g. the CLI without its progress bars). A run of
    100,000 partitions builds 100,000 of them: a third of a second when nobody reads them."""
    return sink is not ignore and getattr(sink, "partition_events", True)
