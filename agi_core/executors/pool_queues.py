"""What the pool keeps per partition and per slot: each partition's home slot and rank there
(`Placement`, one int each), and each slot's ready partitions in plan order (`ReadyQueue`)."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator, Mapping

__all__ = ["Placement", "ReadyQueue"]


class Placement(Mapping[str, str]):
    """Each partition's home slot (the plan's, whose process was given it) and its rank there
    (its place in the slot's plan order), as one int per partition: two dicts at 1,000,000
    partitions were 110 MB of the manager's memory. Read as a mapping, partition -> home slot."""

    def __init__(self, assignment: Mapping[str, list[str]]) -> None:
        self.names = list(assignment)
        count = self._count = max(1, len(self.names))
        self._code = {pid: rank * count + i for i, ids in enumerate(assignment.values()) for rank, pid in enumerate(ids)}

    def __getitem__(self, pid: str) -> str:
        return self.names[self._code[pid] % self._count]

    def __iter__(self) -> Iterator[str]:
        return iter(self._code)

    def __len__(self) -> int:
        return len(self._code)

    def place(self, pid: str) -> tuple[str, int]:
        """``pid``'s home slot and its rank there."""
        rank, i = divmod(self._code[pid], self._count)
        return self.names[i], rank

    def strangers(self, ids: list[str], slot: str) -> set[str]:
        """Those of ``ids`` whose home is not ``slot`` (moved there after a death)."""
        code, count, i = self._code, self._count, self.names.index(slot)
        return {pid for pid in ids if code[pid] % count != i}

    def rank(self, pid: str, default: int = 0) -> int:
        code = self._code.get(pid)
        return default if code is None else code // self._count


class ReadyQueue:
    """A slot's ready partitions, in the plan's order. Ready partitions mostly arrive in rank
    order (all of a plan without dependencies at once): those go to a deque, popped in O(1);
    a partition that arrives out of order goes to a heap. The deque keeps ids and ranks side by
    side, not a tuple per partition (at 1,000,000 ready partitions, 64 MB)."""

    def __init__(self) -> None:
        self._ids: deque[str] = deque()
        self._ranks: deque[int] = deque()
        self._heap: list[tuple[int, str]] = []

    def extend(self, ranked: list[tuple[int, str]]) -> None:
        ranked.sort()
        for item in ranked:
            if not self._heap and (not self._ranks or item[0] > self._ranks[-1]):
                self._ranks.append(item[0])
                self._ids.append(item[1])
            else:
                heapq.heappush(self._heap, item)

    def pop(self) -> str:
        if self._heap and (not self._ranks or self._heap[0][0] < self._ranks[0]):
            return heapq.heappop(self._heap)[1]
        self._ranks.popleft()
        return self._ids.popleft()

    def __len__(self) -> int:
        return len(self._ids) + len(self._heap)
