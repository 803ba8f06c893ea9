"""The dependency graph of a plan's partitions: validation, order, and critical-path levels.

A partition's ``deps`` name the partitions whose results it receives, which makes a plan a
directed acyclic graph (DAG). This module checks that graph and names what is wrong with it
(duplicate ids, unknown dependency ids, the partitions of a cycle in order), gives a topological
order, and the *bottom level* of each partition: the heaviest path from it to the end of the
graph, its own weight included. `balance` places and orders partitions by bottom level, so the
ones on the critical path start first.

Plans of independent partitions (no ``deps`` anywhere) cost one pass and never build a graph. With
deps, the order comes from one iterative depth-first pass over the deps (linear: no recursion
limit, no graph object); networkx is used to name a cycle once one is known to exist
(`nx.find_cycle`), and for the drawing (`dependency_graph`).

>>> from agi_core.app import Partition
>>> parts = [Partition("load", 4.0), Partition("clean", 2.0, deps=("load",)),
...          Partition("stats", 1.0, deps=("clean",)), Partition("plot", 1.0, deps=("load",))]
>>> topological_order(parts)
(['load', 'clean', 'stats', 'plot'], [])
>>> bottom_levels(parts)
{'load': 7.0, 'clean': 3.0, 'stats': 1.0, 'plot': 1.0}
>>> check_dependencies([Partition("a", deps=("c",)), Partition("b", deps=("a",)), Partition("c", deps=("b",))])
Traceback (most recent call last):
...
agi_core.base.errors.PlanError: partitions a → b → c → a form a dependency cycle
>>> [p.message for p in dependency_problems([Partition("a"), Partition("b", deps=("z",)), Partition("a")])]
["partition 'a' is defined 2 times", "partition 'b' depends on unknown partition 'z'"]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from ..base.errors import PlanError

if TYPE_CHECKING:
    import networkx as nx

    from ..app import Partition

__all__ = ["Problem", "bottom_levels", "check_dependencies", "dependency_graph", "dependency_problems", "topological_order"]

#: each arrow of a cycle in an error message points from a partition to one that receives its result
ARROW = " → "


class Problem(NamedTuple):
    """One thing wrong with a plan's partitions, and how to fix it."""

    message: str
    fix: str


_FIX_DUPLICATE = "give every partition a unique id in App.plan()"
_FIX_UNKNOWN = "list in `deps` only ids of partitions that App.plan() returns"
_FIX_CYCLE = (f"remove one of these dependencies in App.plan() (each '{ARROW.strip()}' points from a partition "
              "to one that lists it in its deps)")


def dependency_problems(partitions: Sequence[Partition]) -> list[Problem]:
    """Duplicate ids, dependencies on unknown ids, and (when there are neither) one cycle.

    Linear in partitions + dependency edges; without any ``deps`` only the duplicate check runs.
    """
    return _analyse(partitions)[0]


def check_dependencies(partitions: Sequence[Partition], *, origin: str | None = None) -> None:
    """Raise `PlanError` naming every duplicate id and unknown dependency, or the cycle; its
    message starts with ``origin:`` when given."""
    _raise(_analyse(partitions)[0], origin)


def topological_order(partitions: Sequence[Partition]) -> tuple[list[str], list[str]]:
    """Every id with its dependencies before it, and the ids left over (sorted): those on a
    cycle or depending on one, which no order can place. Dependencies outside ``partitions`` are
    taken as already done."""
    order, on_cycle = _depth_first(partitions, {p.id: p.deps for p in partitions}, every=True)
    if on_cycle is None:
        return order, []
    return _kahn(partitions)


def bottom_levels(partitions: Sequence[Partition], *, origin: str | None = None) -> dict[str, float]:
    """Each partition's bottom level: the largest sum of weights along a path from it to a
    partition nothing depends on, its own weight included (for a partition without dependents,
    its weight). Listed in a topological order (dependencies first). The partitions must form a
    valid DAG: otherwise `PlanError`, as `check_dependencies` raises it (``origin`` prefixes it)."""
    problems, order, deps_of = _analyse(partitions, every=True)
    _raise(problems, origin)
    if not deps_of:  # no deps: each partition's own weight
        return {p.id: float(p.weight) for p in partitions}
    weight = {p.id: p.weight for p in partitions}
    # Dependents before their dependencies: when a partition is reached, every path below it is
    # final, and it hands its level to each of its dependencies.
    level: dict[str, float] = {}
    below: dict[str, float] = {}
    get = below.get
    for pid in reversed(order):
        mine = level[pid] = float(weight[pid]) + get(pid, 0.0)
        for dep in deps_of[pid]:
            if mine > get(dep, 0.0):
                below[dep] = mine
    return {pid: level[pid] for pid in order}


def dependency_graph(partitions: Sequence[Partition]) -> nx.DiGraph:
    """A networkx `DiGraph` of the partitions (node attribute ``weight``), with an edge from each
    dependency to the partition that receives its result (unknown dependencies left out)."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from((p.id, {"weight": p.weight}) for p in partitions)
    graph.add_edges_from((dep, p.id) for p in partitions for dep in p.deps if dep in graph)
    return graph


# -- internals ----------------------------------------------------------------------------------


def _analyse(partitions: Sequence[Partition], *,
             every: bool = False) -> tuple[list[Problem], list[str], dict[str, tuple[str, ...]]]:
    """The problems, and when there are none the order `_depth_first` gives (every id if
    ``every``, else those with deps or depended on), with each id's deps."""
    ids = [p.id for p in partitions]
    known = set(ids)
    problems: list[Problem] = []
    if len(known) != len(ids):
        problems += [Problem(f"partition '{pid}' is defined {n} times", _FIX_DUPLICATE)
                     for pid, n in Counter(ids).items() if n > 1]
    linked = [p for p in partitions if p.deps]
    problems += [Problem(f"partition '{part.id}' depends on unknown partition '{dep}'", _FIX_UNKNOWN)
                 for part in linked for dep in part.deps if dep not in known]
    if not linked or problems:
        return problems, ids if every and not problems else [], {}
    deps_of = {p.id: p.deps for p in partitions}
    order, on_cycle = _depth_first(partitions, deps_of, every=every)
    if on_cycle is not None:
        cycle = _cycle_through(partitions, on_cycle)
        shown = ARROW.join(cycle) if len(cycle) <= 12 else f"{ARROW.join(cycle[:6])}{ARROW}…{ARROW}{ARROW.join(cycle[-3:])}"
        size = f" ({len(cycle) - 1} partitions)" if len(cycle) > 12 else ""
        problems.append(Problem(f"partitions {shown} form a dependency cycle{size}", _FIX_CYCLE))
    return problems, order, deps_of


def _raise(problems: Sequence[Problem], origin: str | None) -> None:
    if not problems:
        return
    lines = [p.message for p in problems]
    if len(lines) == 1:
        message = lines[0]
    else:
        shown = lines[:20] + ([f"… and {len(lines) - 20} more"] if len(lines) > 20 else [])
        message = "invalid work plan:\n  " + "\n  ".join(shown)
    raise PlanError(f"{origin}: {message}" if origin else message, fix=problems[0].fix)


def _depth_first(partitions: Sequence[Partition], deps_of: Mapping[str, Sequence[str]], *,
                 every: bool = False) -> tuple[list[str], list[str] | None]:
    """Post-order over the deps: ids with their dependencies first. Only partitions in the graph
    (with deps, or a dependency of one), unless ``every``. Returns the order and, if the walk met
    a cycle, the ids on the walk's path around it (the order is then incomplete). Unknown
    dependencies are skipped."""
    state: dict[str, bool] = {}  # False: on the current path; True: done
    order: list[str] = []
    emit = order.append
    for part in partitions:
        if part.id in state:
            continue
        if not part.deps:
            if every:
                state[part.id] = True
                emit(part.id)
            continue
        state[part.id] = False
        stack = [(part.id, iter(part.deps))]
        while stack:
            node, pending = stack[-1]
            for dep in pending:
                seen = state.get(dep)
                if seen is None:
                    below = deps_of.get(dep)
                    if below is None:  # unknown: taken as done
                        continue
                    if below:
                        state[dep] = False
                        stack.append((dep, iter(below)))
                        break
                    state[dep] = True
                    emit(dep)
                elif seen is False:  # back on the path: the path from `dep` to here is a cycle
                    path = [pid for pid, _ in stack]
                    return order, path[path.index(dep):]
            else:
                stack.pop()
                state[node] = True
                emit(node)
    return order, None


def _cycle_through(partitions: Sequence[Partition], around: Sequence[str]) -> list[str]:
    """The partitions of a cycle among ``around`` (ids the walk found on one), with networkx, in
    the direction results flow, beginning with the one listed first in ``partitions`` and ending
    where it began. Only those ids make the graph: an error on a big plan stays quick."""
    import networkx as nx

    members = set(around)
    graph = nx.DiGraph()
    graph.add_edges_from((dep, p.id) for p in partitions if p.id in members for dep in p.deps if dep in members)
    nodes = [u for u, _ in nx.find_cycle(graph, source=around[0])]
    position = {p.id: k for k, p in enumerate(partitions) if p.id in members}
    first = min(range(len(nodes)), key=lambda k: position[nodes[k]])
    nodes = nodes[first:] + nodes[:first]
    return [*nodes, nodes[0]]


def _kahn(partitions: Sequence[Partition]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm: the order it can give, and the ids it cannot place (sorted)."""
    present = {p.id for p in partitions}
    waiting = {p.id: sum(1 for dep in p.deps if dep in present) for p in partitions}
    dependents: dict[str, list[str]] = {}
    for part in partitions:
        for dep in part.deps:
            dependents.setdefault(dep, []).append(part.id)
    ready = [pid for pid, n in waiting.items() if n == 0]
    order: list[str] = []
    while ready:
        pid = ready.pop()
        order.append(pid)
        for child in dependents.get(pid, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return order, sorted(pid for pid, n in waiting.items() if n > 0)
