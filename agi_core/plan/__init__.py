"""Work plans: partitions assigned to worker slots, as an inspectable, editable JSON file, and the
graph driver that decides which partitions may run."""

from .balancing import Slot, balance, makespan, slots_for, slots_for_mode
from .graph import GraphDriver, Known
from .workplan import WorkPlan, build_plan, topological_order

__all__ = ["GraphDriver", "Known", "Slot", "WorkPlan", "balance", "build_plan", "makespan", "slots_for", "slots_for_mode",
           "topological_order"]
