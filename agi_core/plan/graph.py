"""`GraphDriver`: the one place that decides which partitions may run now.

Every executor asks it the same things: which partitions are ready (all their dependencies
succeeded), which are skipped (a dependency failed, transitively), and the results their
dependencies gave. Results known before anything runs (the result cache's hits) are given to it
at the start: they count as done, and feed their dependents. Executors only dispatch.

The driver is linear in partitions + dependency edges; a plan of 100,000 independent partitions
costs one pass.

>>> from agi_core.app import Partition
>>> driver = GraphDriver([Partition("a"), Partition("b", deps=("a",)), Partition("c", deps=("b",))])
>>> driver.ready()
['a']
>>> driver.complete("a", ok=False)
['b', 'c']
>>> driver.finished
True
>>> driver = GraphDriver([Partition("a"), Partition("b", deps=("a",))], known={"a": Known(1)})
>>> [pid for pid, _ in driver.take_known()], driver.ready(), driver.inputs("b")
(['a'], ['b'], {'a': 1})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..app import Partition

__all__ = ["GraphDriver", "Known"]


@dataclass(frozen=True, slots=True)
class Known:
    """A result known before dispatch (e.g. found in the cache), and where it came from."""

    result: Any
    source: str = "cache"


class HasResult(Protocol):
    """What the driver needs of a known result: the result (a `Known`, or a cache hit's `Outcome`)."""

    @property
    def result(self) -> Any: ...


class GraphDriver:
    """Tracks the partitions of one run: waiting, ready, running, done.

    ``known`` are results known from the start (the cache knows every key before anything
    runs): they are done at once, never handed out by `ready`, reported by `take_known`, and
    count as succeeded for their dependents.
    """

    def __init__(self, partitions: Sequence[Partition], *, known: Mapping[str, HasResult] | None = None) -> None:
        self._parts = {p.id: p for p in partitions}
        self._order = [p.id for p in partitions]
        self._waiting: dict[str, int] = {}
        self._dependents: dict[str, list[str]] = {}
        for part in [p for p in partitions if p.deps]:
            self._waiting[part.id] = len(part.deps)
            for dep in part.deps:
                self._dependents.setdefault(dep, []).append(part.id)
        self._results: dict[str, Any] = {}  # results of done partitions that others still need
        self._known: list[tuple[str, HasResult]] = []
        self._open = len(self._order)  # neither done, failed nor skipped
        self._known_ids = frozenset(known or ())
        if known:
            self._known = [(pid, known[pid]) for pid in self._order if pid in known]
            self._open -= len(self._known)
            dependents = self._dependents
            for pid, found in self._known if dependents else ():
                if pid in dependents:
                    self._results[pid] = found.result
                    for child in dependents[pid]:
                        self._waiting[child] -= 1
        waiting = self._waiting
        self._fresh: list[str] = ([pid for pid in self._order if not waiting.get(pid) and pid not in known] if known
                                  else [pid for pid in self._order if not waiting.get(pid)])

    # -- questions --------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True when every partition has succeeded, failed, been skipped or been found known."""
        return self._open == 0

    @property
    def open_count(self) -> int:
        return self._open

    def partition(self, pid: str) -> Partition:
        return self._parts[pid]

    def has_dependents(self, pid: str) -> bool:
        return pid in self._dependents

    def inputs(self, pid: str) -> dict[str, Any]:
        """The results of ``pid``'s dependencies (what `App.work` receives as ``ctx.deps``)."""
        return {dep: self._results[dep] for dep in self._parts[pid].deps}

    # -- progress ---------------------------------------------------------------------------

    def ready(self) -> list[str]:
        """Partitions that may run now and were not handed out before, in plan order among those
        that became ready together."""
        out, self._fresh = self._fresh, []
        return out

    def result(self, pid: str) -> Any:
        """The result of a done partition that others depend on (KeyError otherwise)."""
        return self._results[pid]

    def take_known(self) -> list[tuple[str, HasResult]]:
        """The partitions known from the start, once."""
        known, self._known = self._known, []
        return known

    def complete(self, pid: str, *, ok: bool, result: Any = None) -> list[str]:
        """Record that ``pid`` ran. Returns the partitions skipped because it failed (all its
        descendants that had not run), in dependency order."""
        return self._finish(pid, ok, result)

    def _finish(self, pid: str, ok: bool, result: Any) -> list[str]:
        # Called once per partition: 100,000 times in a big run, so kept to a few dict lookups.
        self._open -= 1
        children = self._dependents.get(pid, ())
        if ok:
            if children:
                self._results[pid] = result
            for child in children:
                self._waiting[child] -= 1
                # a child known from the start (cached) is done already: a refreshed parent must not run it again
                if self._waiting[child] == 0 and child not in self._known_ids:
                    self._fresh.append(child)
            return []
        return self._skip_below(children)

    def _skip_below(self, roots: Iterable[str]) -> list[str]:
        skipped: list[str] = []
        stack = list(roots)
        while stack:
            pid = stack.pop()
            if self._waiting.get(pid, 0) < 0 or pid in self._known_ids:  # already skipped, or done from the start
                continue
            self._waiting[pid] = -1
            self._open -= 1
            skipped.append(pid)
            stack.extend(self._dependents.get(pid, ()))
        return skipped

    def failed_dependency(self, pid: str) -> str | None:
        """For a skipped partition: one of its dependencies that did not succeed."""
        return next((dep for dep in self._parts[pid].deps if dep not in self._results), None)
