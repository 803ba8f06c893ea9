"""`WorkPlan`: partitions, slots and the assignment between them, as a JSON file a person may edit.

The fingerprint covers what the plan was built from (app, args, partitions) but not the
assignment, which is the part meant for editing. A plan whose fingerprint no longer matches what
the app plans today is stale, and the error says what changed.

>>> from agi_core.app import Partition
>>> from agi_core.plan import Slot
>>> plan = build_plan("demo", {"n": 2}, [Partition("a", 2.0), Partition("b", 1.0)], [Slot("h-0", "h")])
>>> plan.assignment
{'h-0': ['a', 'b']}
>>> WorkPlan.from_json(plan.to_json()).fingerprint == plan.fingerprint
True
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from ..app import Partition
from ..base.atomic import write_bytes_atomic
from ..base.errors import PlanError
from .balancing import Slot, balance, makespan
from .dag import bottom_levels, check_dependencies, dependency_problems, topological_order
from .plan_changes import describe_edits, plan_changes
from .plan_json import PAYLOAD_FIX, SCHEMA, encodes_as_json, fingerprint_of, json_problem

__all__ = ["SCHEMA", "WorkPlan", "build_plan", "fingerprint_of", "json_problem", "topological_order"]


def _partition_json(part: Partition) -> dict[str, Any]:
    data = {"id": part.id, "weight": part.weight, "deps": list(part.deps), "needs": list(part.needs), "payload": part.payload}
    if part.reads is not None:
        data["reads"] = list(part.reads)
    if part.prefers:
        data["prefers"] = list(part.prefers)
    if part.inputs:
        data["inputs"] = list(part.inputs)
    return data


@dataclass
class WorkPlan:
    """A balanced assignment of an app's partitions to worker slots."""

    app: str
    args: dict[str, Any]
    slots: list[Slot]
    partitions: list[Partition]
    assignment: dict[str, list[str]]
    fingerprint: str

    # -- views ------------------------------------------------------------------------------

    def partition_map(self) -> dict[str, Partition]:
        return {p.id: p for p in self.partitions}

    def slot_of(self) -> dict[str, str]:
        """Partition id → slot name."""
        return {pid: slot for slot, ids in self.assignment.items() for pid in ids}

    def loads(self) -> dict[str, float]:
        """Total weight per slot divided by its capacity (its expected busy time)."""
        weights = {p.id: p.weight for p in self.partitions}
        capacity = {s.name: s.capacity for s in self.slots}
        return {slot: sum(weights[p] for p in ids) / capacity[slot] for slot, ids in self.assignment.items()}

    def makespan(self) -> float:
        return makespan(self.assignment, {p.id: p.weight for p in self.partitions}, self.slots)

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "app": self.app,
            "fingerprint": self.fingerprint,
            "args": self.args,
            "slots": [{"name": s.name, "host": s.host, "capacity": s.capacity, "capabilities": list(s.capabilities)} for s in self.slots],
            "assignment": self.assignment,
            "partitions": [_partition_json(p) for p in self.partitions],
        }

    def to_json(self) -> str:
        """JSON with one line per slot of the assignment and one per partition: easy to read, diff
        and edit, and fast to write for 100,000 partitions (pydantic-core encodes each partition)."""
        return b"".join(self.json_chunks()).decode()

    def json_chunks(self, chunk: int = 20_000) -> Iterator[bytes]:
        """`to_json`'s text, encoded, in pieces of ``chunk`` partitions: `save` writes them as they
        come, so a plan of 1,000,000 partitions is never a few hundred MB string in memory."""
        head = {"schema": SCHEMA, "app": self.app, "fingerprint": self.fingerprint, "args": self.args,
                "slots": [{"name": s.name, "host": s.host, "capacity": s.capacity, "capabilities": list(s.capabilities)}
                          for s in self.slots]}
        lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in head.items()]
        assignment = ",\n".join(f"  {json.dumps(slot)}: {json.dumps(ids)}" for slot, ids in self.assignment.items())
        yield ("{\n" + ",\n".join(lines) + f',\n "assignment": {{\n{assignment}\n }},\n "partitions": [\n').encode()
        for first in range(0, len(self.partitions), chunk):
            # One encoder call for a chunk of partitions, then a line break before each: `},{"id":`
            # cannot occur inside a JSON string (its quote would be escaped), and whitespace between
            # JSON tokens is always allowed, so the text stays the same data.
            some = self.partitions[first: first + chunk]
            try:
                encoded = to_json(some)
            except ValueError as exc:  # e.g. a string UTF-8 cannot encode, in a field build_plan does not look into
                bad = next((p.id for p in some if not encodes_as_json(p)), "?")
                raise PlanError(f"partition '{bad}' cannot be written to a plan file: {exc}", fix=PAYLOAD_FIX) from None
            yield (b",\n  " if first else b"  ") + encoded[1:-1].replace(b'},{"id":', b'},\n  {"id":')
        yield b"\n ]\n}\n"

    def file_digest(self) -> str:
        """What the plan file (`save`) holds, as a SHA-256, without writing it: the fingerprint
        (app, args, every partition), the slots and the assignment. Two plans with the same
        digest are the same plan (their files differ at most in the order of a payload's keys)."""
        digest = hashlib.sha256(f"{SCHEMA}\0{self.app}\0{self.fingerprint}\0".encode())
        digest.update(json.dumps([[s.name, s.host, s.capacity, list(s.capabilities)] for s in self.slots]).encode())
        for slot, ids in self.assignment.items():
            digest.update(b"\0\0" + slot.encode() + b"\0" + "\0".join(ids).encode())
        return digest.hexdigest()

    def save(self, path: Path) -> None:
        """Write the plan atomically (a reader never sees half a file)."""
        write_bytes_atomic(Path(path), self.json_chunks())

    @classmethod
    def from_json(cls, text: str, *, origin: str = "plan", current: WorkPlan | None = None) -> WorkPlan:
        """Read a plan and check it (`check`); every problem names the partition or slot.
        ``current``: what the app plans today, to name what an edit changed (see `check`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{origin}: not valid JSON: {exc}", fix="fix the JSON, or write a new plan with `agi distrib APP --out FILE`") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise PlanError(f"{origin}: not a work plan (schema {found!r}, expected {SCHEMA!r})",
                            fix="write a plan with `agi distrib APP --out FILE`")
        try:
            slots = [Slot(s["name"], s["host"], float(s.get("capacity", 1.0)), tuple(s.get("capabilities", ()))) for s in data["slots"]]
            partitions = [
                Partition(p["id"], float(p.get("weight", 1.0)), p.get("payload"), tuple(p.get("deps", ())), tuple(p.get("needs", ())),
                          tuple(p["reads"]) if p.get("reads") is not None else None, tuple(p.get("prefers") or ()),
                          tuple(p.get("inputs") or ()))
                for p in data["partitions"]
            ]
            assignment = {str(slot): [str(pid) for pid in ids] for slot, ids in data["assignment"].items()}
            plan = cls(str(data["app"]), dict(data["args"]), slots, partitions, assignment, str(data["fingerprint"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlanError(f"{origin}: malformed work plan ({type(exc).__name__}: {exc})",
                            fix="compare it with a fresh `agi distrib APP --out FILE`") from None
        plan.check(origin=origin, current=current)
        return plan

    @classmethod
    def load(cls, path: str | Path, *, current: WorkPlan | None = None) -> WorkPlan:
        """Read and check the plan file at ``path`` (`from_json`)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise PlanError(f"{path}: cannot read the plan: {exc.strerror}", fix="check the path") from None
        return cls.from_json(text, origin=str(path), current=current)

    # -- validation -------------------------------------------------------------------------

    def check(self, *, origin: str = "plan", verify_fingerprint: bool = True, dependencies: bool = True,
              current: WorkPlan | None = None) -> None:
        """Structural checks: unique ids, known deps without cycles (`dag.dependency_problems`;
        ``dependencies=False`` when the caller has just checked them), every partition in exactly
        one existing slot that offers what it needs, and a fingerprint that matches the partitions.

        When the partitions or args were edited (the fingerprint does not match them), the error
        names what differs from ``current`` (what the app plans today, when the caller has it):
        the plan as it was made, when ``current`` has the plan's fingerprint."""
        ids = [p.id for p in self.partitions]
        known = set(ids)
        graph = dependency_problems(self.partitions) if dependencies else []
        problems = [problem.message for problem in graph]
        slot_names = {s.name: s for s in self.slots}
        problems += [f"slot '{name}' is defined more than once" for name, n in Counter(s.name for s in self.slots).items() if n > 1]
        placed: Counter[str] = Counter()
        for slot, pids in self.assignment.items():
            if slot not in slot_names:
                problems.append(f"assignment names slot '{slot}', which is not in the plan's slots ({', '.join(slot_names)})")
            placed.update(pids)
        problems += [f"partition '{pid}' is assigned {n} times" for pid, n in placed.items() if n > 1]
        problems += [f"partition '{pid}' is assigned but not defined" for pid in placed if pid not in known]
        problems += [f"partition '{pid}' is not assigned to any slot" for pid in ids if pid not in placed]
        needs = {p.id: set(p.needs) for p in self.partitions if p.needs}
        for slot, pids in self.assignment.items() if needs else ():
            caps = set(slot_names[slot].capabilities) if slot in slot_names else set()
            for pid in pids:
                missing = needs.get(pid, set()) - caps
                if missing and slot in slot_names:
                    problems.append(f"partition '{pid}' needs {', '.join(sorted(missing))} but slot '{slot}' does not offer it")
        if not problems and verify_fingerprint:
            try:
                edited = fingerprint_of(self.app, self.args, self.partitions) != self.fingerprint
            except PlanError as exc:
                raise PlanError(f"{origin}: {exc.message}", fix=exc.fix) from None
            if edited:
                problems.append("the partitions or args were edited: the fingerprint no longer matches them"
                                + describe_edits(self, current))
        if problems:
            shown = problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else [])
            # A plan made by `build_plan` had its ids and deps checked there, with App.plan()'s fix:
            # what is found here is in a given (edited) plan, which only the assignment may change.
            raise PlanError(f"{origin}: invalid work plan:\n  " + "\n  ".join(shown),
                            fix="edit only the assignment (each partition in exactly one slot), "
                                "or write a new plan with `agi distrib`")

    def check_current(self, fresh: WorkPlan, *, origin: str = "plan") -> None:
        """Check that this (possibly edited) plan still fits the app as it plans today: same
        fingerprint, and every slot it uses exists in today's worker slots."""
        if fresh.app != self.app:
            raise PlanError(f"{origin}: the plan is for app '{self.app}', not '{fresh.app}'", fix=f"run it with `agi run {self.app}`")
        if fresh.fingerprint != self.fingerprint:
            raise PlanError(f"{origin}: stale work plan: {'; '.join(plan_changes(self, fresh))}",
                            fix="write a new plan with `agi distrib APP --out FILE` (and redo your edits), or run with the plan's args")
        current = {s.name for s in fresh.slots}
        missing = [slot for slot, ids in self.assignment.items() if ids and slot not in current]
        if missing:
            raise PlanError(
                f"{origin}: the plan uses slot(s) {', '.join(missing)}, which this run does not have (it has {', '.join(sorted(current))})",
                fix="move their partitions to existing slots, or run with the worker map / mode the plan was made for",
            )


def build_plan(app: str, args: Mapping[str, Any], partitions: Sequence[Partition], slots: Sequence[Slot], *,
               speeds: Mapping[str, float] | None = None) -> WorkPlan:
    """Balance ``partitions`` over ``slots`` and wrap the result as a checked `WorkPlan`.

    With ``deps``, the dependency graph is checked once (duplicate ids, unknown ids, cycles) while
    computing the bottom levels that `balance` orders by. ``speeds``: see `balance` (``prefers``)."""
    partitions = list(partitions)
    origin = f"the plan of app '{app}'"
    for part in partitions:  # what a plan file could not carry, or would give back changed, fails here
        problem = json_problem(part.payload) or json_problem(part.id)
        if problem:
            raise PlanError(f"{origin}: partition '{part.id}' cannot be written to a plan file as it is: {problem}", fix=PAYLOAD_FIX)
    fingerprint = fingerprint_of(app, args, partitions)
    # Duplicate ids (and, with deps, unknown ids and cycles) are the app's to fix, in App.plan():
    # checked before balancing, whose assignment would repeat them with a plan file's fix.
    levels = bottom_levels(partitions, origin=origin) if any(p.deps for p in partitions) else None
    if levels is None:
        check_dependencies(partitions, origin=origin)
    plan = WorkPlan(app, dict(args), list(slots), partitions, balance(partitions, slots, levels=levels, speeds=speeds), fingerprint)
    plan.check(origin=origin, verify_fingerprint=False, dependencies=False)
    return plan
