"""The body of a pool slot's worker process: run the batches the manager sends, stream outcomes.

Outcomes go back in small groups: at the end of a batch, and whenever 0.1 s has passed since the
last send, so a slot of long partitions reports each one as it finishes and a slot of 50,000
tiny ones sends a few hundred messages, not 50,000. The cache entries of a group are written as
one pack just before it is sent. Each result is pickled on its own (`wire`): one the manager
cannot load fails its partition, not the group.

Which partition runs now, and since when, is written to a small shared array (`Progress`)
before each `work()`: the manager reads it without a message, to name a partition that hangs
and, when the process dies, the partition it died in. The manager may queue a second batch in the
pipe while one runs (`pool_slot.DEPTH`): the array also says which batch runs, counted as they are read.
"""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import MutableSequence
from multiprocessing.connection import Connection
from typing import Any

from ..app import Partition
from ..base.lifeline import die_with_parent
from .base import JobSpec, Outcome
from .partition_runner import PartitionRunner
from .wire import pack_outcomes

__all__ = ["IDLE", "Batch", "slot_main"]

_FLUSH_S = 0.1

#: what the manager sends: (partition id, its dependencies' results, None) triples; None means
#: "stop". The slot's own partitions and their cache keys are given once, when the process starts
#: (free with fork); a partition moved here from a lost slot comes with them: (id, inputs, (partition, key)).
Batch = list[tuple[str, dict[str, Any], tuple[Partition, str] | None]]

#: `Progress` between partitions: no partition is running
IDLE = -1.0


def slot_main(conn: Connection, job: JobSpec, name: str, parent_pid: int, parts: dict[str, Partition], keys: dict[str, str],
              progress: MutableSequence[float]) -> None:
    """Load the app once, then run each batch the manager sends until it sends ``None``.
    ``keys``: the cache keys of this slot's partitions (empty without the cache). ``progress``:
    [index in the batch of the partition running now (`IDLE` between batches), when it started,
    the number of that batch (the first read is 1)]."""
    die_with_parent(parent_pid)
    # The manager handles Ctrl-C and SIGTERM (`run.termination`) and stops us; a fork must not
    # wake the manager's event loop through its inherited signal wake-up descriptor either.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    runner: PartitionRunner | None = None
    number = 0
    while (batch := conn.recv()) is not None:
        number += 1
        progress[2] = number  # while the index says IDLE: a reader never pairs it with the last batch's index
        pending: list[Outcome] = []
        last_send = time.monotonic()
        for index, (pid, inputs, moved) in enumerate(batch):
            part, key = moved if moved is not None else (parts[pid], keys.get(pid, ""))
            progress[1] = time.time()  # the start first: a reader that sees the index sees its start
            progress[0] = index
            try:
                runner = runner or PartitionRunner(job)
                outcome = runner.run(part, name, inputs, key=key)
            except Exception:  # noqa: BLE001 - loading the app failed: this partition's failure
                outcome = Outcome(part.id, name, "failed", error=traceback.format_exc())
            pending.append(outcome)
            if time.monotonic() - last_send >= _FLUSH_S:
                _send(conn, pending, runner, done=False)
                pending, last_send = [], time.monotonic()
        progress[0] = IDLE
        _send(conn, pending, runner, done=True)


def _send(conn: Connection, outcomes: list[Outcome], runner: PartitionRunner | None, *, done: bool) -> None:
    """Send outcomes to the manager, their cache entries written first (one pack per send). Each
    result is in its own pickle (`wire`): one the manager cannot load fails only its partition."""
    if runner is not None:
        runner.flush()
    conn.send((pack_outcomes(outcomes), done))
