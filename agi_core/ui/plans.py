"""The DISTRIBUTE panel's data: the plan of an app's current settings, or its edited plan file;
the tree by host and slot (partitions paged), loads, warnings, and moving partitions between slots.

An edited plan is saved at ``<share>/ui/plans/<app>.json``, validated after every move; a run
started from the page then uses it (``plan=`` that path), and `WorkPlan.check_current` refuses it
once the app or its args plan something else (the page shows it as stale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..app.env import AgiEnv
from ..base.errors import AgiError, PlanError
from ..plan import WorkPlan
from ..run import fresh_plan, resolve
from .config import UiConfig

__all__ = ["PAGE", "PlanView", "move_partitions", "plan_file", "plan_view", "slot_page"]

PAGE = 200  # partitions shown per slot at a time


def plan_file(config: UiConfig, env: AgiEnv) -> Path:
    """Where the page keeps the app's edited plan."""
    request = resolve(env, cluster=config.share_override() or None)
    return request.share / "ui" / "plans" / f"{env.name}.json"


@dataclass
class PlanView:
    """What the DISTRIBUTE panel shows."""

    plan: WorkPlan
    edited: bool  # the plan file (edited) rather than a fresh plan
    file: Path
    hosts: dict[str, list[dict[str, Any]]]  # host → slots (name, count, load, capabilities)
    max_load: float
    warnings: list[str] = field(default_factory=list)

    @property
    def slot_names(self) -> list[str]:
        return [s.name for s in self.plan.slots]


def _warnings(plan: WorkPlan, stale: str | None) -> list[str]:
    warnings = [stale] if stale else []
    unused = [s.name for s in plan.slots if not plan.assignment.get(s.name)]
    if unused:
        warnings.append(f"unused worker(s): {', '.join(unused[:8])}{' …' if len(unused) > 8 else ''} get no partition")
    hosts_used = {s.host for s in plan.slots if plan.assignment.get(s.name)}
    hosts_all = {s.host for s in plan.slots}
    if len(hosts_all) > 1 and len(hosts_used) == 1:
        warnings.append(f"everything runs on one host ({next(iter(hosts_used))}) although the worker map has {len(hosts_all)}")
    return warnings


def plan_view(config: UiConfig, env: AgiEnv) -> PlanView:
    """The edited plan when there is one (with a warning when it is stale), else a fresh plan."""
    request = resolve(env, cluster=config.share_override() or None)
    fresh = fresh_plan(env, request)
    file = plan_file(config, env)
    plan, edited, stale = fresh, False, None
    if file.exists():
        try:
            plan, edited = WorkPlan.load(file, current=fresh), True
            plan.check_current(fresh, origin="the edited plan")
        except PlanError as exc:
            stale = f"{exc.message} — discard the edits to plan afresh"
    loads = plan.loads()
    hosts: dict[str, list[dict[str, Any]]] = {}
    for slot in plan.slots:
        hosts.setdefault(slot.host, []).append({"name": slot.name, "count": len(plan.assignment.get(slot.name, [])),
                                               "load": loads.get(slot.name, 0.0), "capabilities": slot.capabilities})
    return PlanView(plan, edited, file, hosts, max(loads.values(), default=0.0) or 1.0, _warnings(plan, stale))


def slot_page(plan: WorkPlan, slot: str, start: int = 0) -> tuple[list[dict[str, Any]], int | None]:
    """One page of ``slot``'s partitions, and where the next page starts (None: the last)."""
    ids = plan.assignment.get(slot, [])
    parts = plan.partition_map()
    rows = [{"id": pid, "weight": parts[pid].weight, "deps": parts[pid].deps, "needs": parts[pid].needs}
            for pid in ids[start:start + PAGE]]
    return rows, (start + PAGE if start + PAGE < len(ids) else None)


def move_partitions(config: UiConfig, env: AgiEnv, ids: Sequence[str], slot: str) -> WorkPlan:
    """Move ``ids`` to ``slot`` in the app's plan (the edited one, else a fresh one), check the
    result and save it as the plan file the next run uses. Nothing is saved when it is invalid."""
    view = plan_view(config, env)
    plan = view.plan
    if not ids:
        raise AgiError("no partition selected", fix="tick the partitions to move, then choose their slot")
    if slot not in view.slot_names:
        raise PlanError(f"no slot '{slot}' in the plan (it has {', '.join(view.slot_names)})", fix="choose one of its slots")
    moving = set(ids)
    assignment = {name: [pid for pid in pids if pid not in moving] for name, pids in plan.assignment.items()}
    known = set(plan.partition_map())
    unknown = sorted(moving - known)
    if unknown:
        raise PlanError(f"unknown partition(s): {', '.join(unknown[:5])}", fix="reload the page: the plan changed")
    assignment.setdefault(slot, [])
    assignment[slot] += [pid for pid in plan.slot_of() if pid in moving]
    edited = WorkPlan(plan.app, plan.args, plan.slots, plan.partitions, assignment, plan.fingerprint)
    edited.check(origin="the edited plan")
    view.file.parent.mkdir(parents=True, exist_ok=True)
    edited.save(view.file)
    return edited


def discard(config: UiConfig, env: AgiEnv) -> None:
    """Forget the app's edited plan: runs plan afresh again."""
    plan_file(config, env).unlink(missing_ok=True)
