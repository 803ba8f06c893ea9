"""Work plans: partitions assigned to worker slots, as an inspectable, editable JSON file, and the
graph driver that decides which partitions may run."""

from .balancing import Slot, balance, makespan, slots_for, slots_for_mode
from .dag import bottom_levels, check_dependencies, dependency_graph, topological_order
from .graph import GraphDriver, HasResult, Known
from .workplan import WorkPlan, build_plan

__all__ = ["GraphDriver", "HasResult", "Known", "Slot", "WorkPlan", "balance", "bottom_levels", "build_plan", "check_dependencies",
           "dependency_graph", "makespan", "slots_for", "slots_for_mode", "topological_order"]
