"""The batches a Dask run has not submitted yet, per slot: what moves when workers come and go.

A Dask task that was submitted may already run, and cancelling a running task does not stop its
``work()``: moving it could run a partition twice. So the Dask executor submits only a few
batches ahead per worker (`window`) and keeps the rest here, where they move freely:

- `orphan`: the batches of slots whose worker is not there (never joined, or left) go, each
  whole, to the joined slot where it would finish first (the balancer's rule, longest-processing-
  time: ``(load + weight) / capacity``), keeping the plan's order in every slot.
- `steal`: a worker that joins late takes batches from the end of the most loaded slots' queues
  while that shortens the longest one; a batch moved once is not taken again, unless it goes
  back to the slot it was planned for (a worker late for the start gets its own batches back),
  and a leaving worker's batches move again (they cannot run where they are).

Only independent partitions are batched (DAG nodes are Dask tasks with their inputs' futures,
placed by Dask): moving a batch breaks no dependency, and each slot's queue stays in plan order.

>>> q = BatchQueues([Batch(0, "a", ["p0"], 3.0), Batch(1, "a", ["p1"], 2.0), Batch(2, "b", ["p2"], 1.0)])
>>> [(m.source, m.target, m.count) for m in q.orphan(["b"], ["a"])]
[('b', 'a', 1)]
>>> [(m.source, m.target, m.count) for m in q.steal("c")]
[('a', 'c', 1)]
>>> [b.ids for b in q.take("a", 9)], [b.ids for b in q.take("c", 9)]  # p2 moved once: c takes p1
([['p0'], ['p2']], [['p1']])
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Batch", "BatchQueues", "Move", "window"]


@dataclass(slots=True)
class Batch:
    """One Dask task's worth of independent partitions, all planned for ``slot``."""

    seq: int  # its place in the plan's order of batches (each slot's queue is kept in this order)
    slot: str  # the slot it was planned for (the record's ``slot``)
    ids: list[str]
    weight: float = 1.0
    needs: frozenset[str] = field(default_factory=frozenset)
    moves: int = 0  # how often it moved (a late joiner takes only batches that never moved)


@dataclass(frozen=True, slots=True)
class Move:
    """``count`` partitions in ``batches`` batches moved from ``source``'s queue to ``target``'s."""

    source: str
    target: str
    count: int
    batches: int
    reason: str


def window(nthreads: int) -> int:
    """How many batches a worker holds submitted: one per thread and one ready behind them, so a
    thread never waits for the manager's round trip; the rest stays movable here."""
    return max(1, nthreads) + 1


class BatchQueues:
    """Per slot, the batches its worker runs next (not yet submitted), in plan order."""

    def __init__(self, batches: Iterable[Batch], *, capacity: Mapping[str, float] | None = None,
                 capabilities: Mapping[str, Iterable[str]] | None = None) -> None:
        self._queues: dict[str, deque[Batch]] = {}
        self._load: dict[str, float] = {}
        for batch in sorted(batches, key=lambda b: b.seq):
            self._queues.setdefault(batch.slot, deque()).append(batch)
            self._load[batch.slot] = self._load.get(batch.slot, 0.0) + batch.weight
        self._capacity = dict(capacity or {})
        self._capabilities = {slot: frozenset(caps) for slot, caps in (capabilities or {}).items()}

    # -- views ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def queued(self, slot: str) -> int:
        return len(self._queues.get(slot, ()))

    def view(self, slot: str) -> tuple[Batch, ...]:
        """The batches queued for ``slot``, in the order its worker gets them."""
        return tuple(self._queues.get(slot, ()))

    def slots(self) -> list[str]:
        """The slots that have batches queued."""
        return [slot for slot, queue in self._queues.items() if queue]

    def load(self, slot: str) -> float:
        """The queued weight of ``slot`` per unit of its capacity (its expected time to drain)."""
        return self._load.get(slot, 0.0) / self._capacity.get(slot, 1.0)

    def _fits(self, batch: Batch, slot: str) -> bool:
        return not batch.needs or batch.needs <= self._capabilities.get(slot, frozenset())

    # -- changes ----------------------------------------------------------------------------------

    def take(self, slot: str, count: int) -> list[Batch]:
        """The next ``count`` batches of ``slot``, to submit now (they no longer move)."""
        queue = self._queues.get(slot)
        taken: list[Batch] = []
        while queue and len(taken) < count:
            batch = queue.popleft()
            self._load[slot] -= batch.weight
            taken.append(batch)
        return taken

    def reweigh(self, weigh: Callable[[Batch], tuple[float, frozenset[str]]]) -> None:
        """Give every queued batch its weight and needs (``weigh``) and recompute the loads: a run
        whose workers all came weighs nothing until something has to move."""
        for slot, queue in self._queues.items():
            for batch in queue:
                batch.weight, batch.needs = weigh(batch)
            self._load[slot] = sum(batch.weight for batch in queue)

    def add(self, slot: str, capacity: float = 1.0, capabilities: Iterable[str] = ()) -> None:
        """Know ``slot`` (a worker that joined without being in the plan) before it takes work."""
        self._capacity.setdefault(slot, capacity)
        self._capabilities.setdefault(slot, frozenset(capabilities))
        self._queues.setdefault(slot, deque())

    def orphan(self, sources: Iterable[str], targets: Sequence[str], reason: str = "not joined") -> list[Move]:
        """Move every queued batch of ``sources`` onto ``targets`` (each to the target where it
        would finish first); batches no target can run (their ``needs``) stay where they are.
        Returns the moves, one per (source, target)."""
        targets = [t for t in targets if t not in set(sources)]
        if not targets:
            return []
        for target in targets:
            self._queues.setdefault(target, deque())
            self._load.setdefault(target, 0.0)
        heap = [(self.load(t), k, t) for k, t in enumerate(targets)]
        heapq.heapify(heap)
        moved: dict[tuple[str, str], list[Batch]] = {}
        for source in sources:
            queue = self._queues.get(source)
            if not queue:
                continue
            kept: deque[Batch] = deque()
            for batch in queue:
                target = self._least_loaded(heap, batch)
                if target is None:
                    kept.append(batch)
                    continue
                moved.setdefault((source, target), []).append(batch)
            self._queues[source] = kept
            self._load[source] = sum(b.weight for b in kept)
        return self._apply(moved, reason)

    def _least_loaded(self, heap: list[tuple[float, int, str]], batch: Batch) -> str | None:
        """Pop the eligible target with the least load after ``batch`` and push it back loaded."""
        if not batch.needs:
            load, k, target = heap[0]
            heapq.heapreplace(heap, (load + batch.weight / self._capacity.get(target, 1.0), k, target))
            return target
        eligible = [entry for entry in heap if self._fits(batch, entry[2])]
        if not eligible:
            return None
        entry = min(eligible, key=lambda e: e[0] + batch.weight / self._capacity.get(e[2], 1.0))
        heap.remove(entry)
        heap.append((entry[0] + batch.weight / self._capacity.get(entry[2], 1.0), entry[1], entry[2]))
        heapq.heapify(heap)
        return entry[2]

    def steal(self, thief: str) -> list[Move]:
        """A worker that joined takes batches from the end of the most loaded queues while that
        leaves the most loaded slot less loaded than before; never a batch that moved already,
        unless it was planned for ``thief``. One pass over the queues, then a heap of victims."""
        self._queues.setdefault(thief, deque())
        self._load.setdefault(thief, 0.0)
        thief_capacity = self._capacity.get(thief, 1.0)
        # each victim's takeable batches, from the end of its queue
        takeable = {victim: [i for i in range(len(queue) - 1, -1, -1)
                             if (not queue[i].moves or queue[i].slot == thief) and self._fits(queue[i], thief)]
                    for victim, queue in self._queues.items() if queue and victim != thief}
        position = dict.fromkeys(takeable, 0)
        taken: dict[str, set[int]] = {victim: set() for victim in takeable}
        mine = self._load[thief]
        heap = [(-self.load(victim), victim) for victim, indexes in takeable.items() if indexes]
        heapq.heapify(heap)
        while heap:
            negative, victim = heapq.heappop(heap)
            indexes, at = takeable[victim], position[victim]
            batch = self._queues[victim][indexes[at]]
            if (mine + batch.weight) / thief_capacity >= -negative:  # taking it would not shorten the longest queue
                continue
            position[victim] = at + 1
            taken[victim].add(indexes[at])
            self._load[victim] -= batch.weight
            mine += batch.weight
            if at + 1 < len(indexes):
                heapq.heappush(heap, (-self.load(victim), victim))
        moved: dict[tuple[str, str], list[Batch]] = {}
        for victim, gone in taken.items():
            if gone:
                queue = self._queues[victim]
                moved[(victim, thief)] = [queue[i] for i in sorted(gone)]
                self._queues[victim] = deque(batch for i, batch in enumerate(queue) if i not in gone)
        return self._apply(moved, "joined")

    def _apply(self, moved: Mapping[tuple[str, str], list[Batch]], reason: str) -> list[Move]:
        moves = []
        for (source, target), batches in moved.items():
            queue = self._queues[target]
            for batch in batches:
                batch.moves += 1
                self._load[target] += batch.weight
            merged = sorted([*queue, *batches], key=lambda b: b.seq)  # plan order in every slot
            self._queues[target] = deque(merged)
            moves.append(Move(source, target, sum(len(b.ids) for b in batches), len(batches), reason))
        return moves
