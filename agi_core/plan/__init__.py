"""Work plans: partitions assigned to worker slots, as an inspectable, editable JSON file."""

from .balancing import Slot, balance, makespan, slots_for
from .workplan import WorkPlan, build_plan, topological_order

__all__ = ["Slot", "WorkPlan", "balance", "build_plan", "makespan", "slots_for", "topological_order"]
