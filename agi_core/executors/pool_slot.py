"""A pool slot's worker process seen from the manager: the pipe to it, the batches it holds
(up to `DEPTH`: the next waits in its pipe while it runs one), how big the next should be, and
what it was running when it died (`executors.pool` drives them; `slot_process` is the other end)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ..app import Partition
from .base import JobSpec
from .slot_env import slot_main_in_env
from .slot_process import IDLE, Batch, slot_main

__all__ = ["BATCH_S", "DEPTH", "FIRST_BATCH", "MAX_BATCH", "QUEUED_BYTES", "SentBatch", "SlotProcess"]

# Partitions per message. A batch aims at `BATCH_S` of work (measured on the slot's last batch):
# that bounds the latency of a Ctrl-C and what a slot's death fails, while tiny partitions travel
# thousands to a message (each message costs a round trip and, with the cache, a pack file).
FIRST_BATCH = 256
MAX_BATCH = 4096
BATCH_S = 0.05
#: A slot holds up to two batches: the next waits in its pipe while it runs one, so it never
#: idles while the manager records what it sent (measured: a third of a slot's time with tiny
#: partitions). A queued batch is written only when it fits in the pipe at once (`QUEUED_BYTES`,
#: well under Linux's 208 KiB socket buffer): the manager must never block on a slot that is busy
#: writing its outcomes to it. A bigger one is written when the slot finishes the batch before.
DEPTH = 2
QUEUED_BYTES = 64 << 10


@dataclass(eq=False)
class SentBatch:
    """A batch given to a slot: its number (the slot counts the batches it reads the same way,
    and publishes the one it runs in `Progress`), its partitions in the order they run, when it
    was given, and its message while it waits to be written (`QUEUED_BYTES`)."""

    number: int
    ids: list[str]
    at: float
    held: bytes = b""


class SlotProcess:
    """A worker process for one slot and the pipe to it, with up to `DEPTH` batches in flight."""

    def __init__(self, name: str, job: JobSpec, context: Any, parts: dict[str, Partition], keys: dict[str, str],
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.conn, child = context.Pipe()
        # written by the process (`slot_main`): see `slot_process.Progress`
        self.progress = context.RawArray("d", [IDLE, 0.0, 0.0])
        args = (child, job, name, os.getpid(), parts, keys, self.progress)
        target, args = (slot_main, args) if env is None else (slot_main_in_env, (env, *args))  # env: its GPU (`slot_env`)
        self.process = context.Process(target=target, args=args, name=f"agi-slot-{name}", daemon=True)
        self.process.start()
        child.close()
        self._batches: deque[SentBatch] = deque()  # given and not reported done, oldest (the one it runs) first
        self._given = 0  # batches given so far: the next one's number is one more
        self._last_done = 0.0  # when the last batch was reported done (a queued batch starts then)
        self.in_flight: dict[str, None] = {}  # partitions sent and not reported yet, in order
        self.dead = ""  # why it cannot run partitions any more
        self.stopped: tuple[str, str] | None = None  # (partition, why) when the manager stopped it for a hang
        self.batch_size = FIRST_BATCH  # the next batch's size at most

    @property
    def busy(self) -> bool:
        """A batch was given and its end not yet reported."""
        return bool(self._batches)

    @property
    def full(self) -> bool:
        """It holds as many batches as it may: give it no other until one ends."""
        return len(self._batches) >= DEPTH

    def send(self, batch: Batch) -> None:
        self._given += 1
        sent = SentBatch(self._given, [pid for pid, _, _ in batch], time.monotonic())
        self.in_flight.update(dict.fromkeys(sent.ids))
        message = bytes(ForkingPickler.dumps(batch))
        if self._batches and len(message) > QUEUED_BYTES:
            sent.held = message  # written when the batch before it ends (`batch_done`)
        else:
            self.conn.send_bytes(message)
        self._batches.append(sent)

    def batch_done(self) -> None:
        """The oldest batch ended: size the next one from how long this one took, and write the
        batch that waited for it."""
        sent = self._batches.popleft()
        now = time.monotonic()
        started = max(sent.at, self._last_done)  # a queued batch starts when the one before it ends
        self._last_done = now
        per_partition = (now - started) / max(1, len(sent.ids))
        self.batch_size = max(1, min(MAX_BATCH, int(BATCH_S / per_partition) if per_partition > 0 else MAX_BATCH))
        if self._batches and self._batches[0].held:
            message, self._batches[0].held = self._batches[0].held, b""
            self.conn.send_bytes(message)

    def running(self) -> tuple[str, float] | None:
        """The partition this process runs now and when it started; None between partitions."""
        number = self.progress[2]
        since, index = self.progress[1], int(self.progress[0])  # the start first: `slot_main` writes it first
        if index < 0 or number != self.progress[2]:  # between partitions, or it moved to another batch meanwhile
            return None
        sent = next((b for b in self._batches if b.number == number), None)
        if sent is None or index >= len(sent.ids) or sent.ids[index] not in self.in_flight:
            return None
        return sent.ids[index], since

    def lost(self) -> tuple[list[str], str | None, list[str]]:
        """After the process died: its unreported partitions split into those that ran (their
        results were lost with it), the one it died in (None: it died between partitions), and
        those it never started."""
        index, number = int(self.progress[0]), int(self.progress[2])
        ran: list[str] = []
        current: str | None = None
        unstarted: list[str] = []
        for sent in self._batches:
            for k, pid in enumerate(sent.ids):
                if pid not in self.in_flight:
                    continue
                if sent.number < number or sent.number == number and (index < 0 or k < index):
                    ran.append(pid)
                elif sent.number == number and k == index:
                    current = pid
                else:
                    unstarted.append(pid)
        return ran, current, unstarted

    def kill(self, *, wait: float = 5) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=wait)
        self.conn.close()

    async def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        await asyncio.get_running_loop().run_in_executor(None, self.process.join, 5)
        self.kill()
