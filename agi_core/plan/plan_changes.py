"""What differs between two work plans, in words: the args, partitions gone or added, fields changed,
their order (`plan_changes`), and what an edit of a plan file changed (`describe_edits`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .workplan import WorkPlan

__all__ = ["describe_edits", "plan_changes"]


_FIELDS = ("weight", "payload", "deps", "needs", "reads", "prefers", "inputs")


def describe_edits(plan: WorkPlan, current: WorkPlan | None) -> str:
    """What an edit of ``plan``'s partitions or args changed, compared with ``current`` (the plan
    as the app makes it today); without it, how to find out."""
    if current is None:
        return ("; run it with `agi run APP --plan FILE`, which compares it with what the app plans, "
                "to see which partition or arg differs")
    if current.fingerprint == plan.fingerprint:  # today's plan is the plan as it was made
        return ": " + "; ".join(plan_changes(current, plan, now="is {} in the file"))
    return "; compared with what the app plans today: " + "; ".join(plan_changes(plan, current))


def plan_changes(old: WorkPlan, new: WorkPlan, *, now: str = "is now {}", shown: int = 5) -> list[str]:
    """What differs from ``old`` to ``new``: args, then partitions gone or added, then the first
    partitions whose fields differ (field, old → new value), then their order. Linear in the
    partitions; values compare as JSON (a tuple and a list with the same items are equal)."""
    changes = [f"args.{key} was {_shown(old.args.get(key))}, {now.format(_shown(new.args.get(key)))}"
               for key in sorted(set(old.args) | set(new.args)) if _json(old.args.get(key)) != _json(new.args.get(key))]
    old_parts, new_parts = old.partition_map(), new.partition_map()
    gone = [pid for pid in old_parts if pid not in new_parts]
    added = [pid for pid in new_parts if pid not in old_parts]
    if gone:
        changes.append(f"partitions no longer planned: {', '.join(gone[:5])}{' …' if len(gone) > 5 else ''}")
    if added:
        changes.append(f"new partitions: {', '.join(added[:5])}{' …' if len(added) > 5 else ''}")
    altered = 0
    for pid, before in old_parts.items():
        after = new_parts.get(pid)
        if after is None or after == before:
            continue
        fields = [(name, getattr(before, name), getattr(after, name)) for name in _FIELDS]
        differ = [(name, a, b) for name, a, b in fields if a != b and _json(a) != _json(b)]
        if not differ:
            continue
        altered += 1
        if altered <= shown:
            changes += [f"partition '{pid}' {name} was {_shown(a)}, {now.format(_shown(b))}" for name, a, b in differ]
    if altered > shown:
        changes.append(f"and {altered - shown} more partition(s) changed")
    if not changes:
        moved = next((k for k, (a, b) in enumerate(zip(old.partitions, new.partitions)) if a.id != b.id), None)
        if moved is not None:
            changes.append(f"the partitions are in another order (at position {moved}: "
                           f"'{old.partitions[moved].id}' → '{new.partitions[moved].id}')")
    return changes or ["the app now plans different partitions"]


def _json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _shown(value: Any, width: int = 80) -> str:
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= width else text[: width - 1] + "…"
