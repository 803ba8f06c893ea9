"""A work plan as a rich tree: slots with their load, then their partitions (in the order they run)."""

from __future__ import annotations

from typing import Any

from ..plan import WorkPlan, bottom_levels

__all__ = ["plan_tree"]


def plan_tree(plan: WorkPlan, *, per_slot: int = 12) -> Any:
    """A `rich.tree.Tree` of ``plan``: each slot with its load, then its first ``per_slot`` partitions."""
    from rich.tree import Tree

    parts = plan.partition_map()
    loads = plan.loads()
    # With deps, the heaviest path bounds the run from below whatever the slots: show it beside
    # the makespan (which counts load only).
    critical = (f", critical path {max(bottom_levels(plan.partitions).values()):.4g}"
                if any(p.deps for p in plan.partitions) else "")
    root = Tree(f"[bold]{plan.app}[/] work plan: {len(plan.partitions)} partitions on {len(plan.slots)} slots, "
                f"makespan {plan.makespan():.4g}{critical}  [dim]fingerprint {plan.fingerprint[:12]}[/]")
    for slot in plan.slots:
        ids = plan.assignment.get(slot.name, [])
        branch = root.add(f"[cyan]{slot.name}[/]  {len(ids)} partitions, load {loads.get(slot.name, 0):.4g}"
                          + (f"  [dim]{', '.join(slot.capabilities)}[/]" if slot.capabilities else ""))
        for pid in ids[:per_slot]:
            part = parts[pid]
            extra = (f"  deps: {', '.join(part.deps)}" if part.deps else "") + (f"  needs: {', '.join(part.needs)}" if part.needs else "")
            branch.add(f"{pid}  [dim]weight {part.weight:.4g}{extra}[/]")
        if len(ids) > per_slot:
            branch.add(f"[dim]… {len(ids) - per_slot} more[/]")
    return root
