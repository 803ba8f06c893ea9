"""The work plan of a request: the app's partitions balanced over the slots its mode has, or an
edited plan file, checked against what the app plans today."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PlanError
from ..kernels import gpu_visible
from ..plan import WorkPlan, build_plan, slots_for_mode

if TYPE_CHECKING:
    from ..env import AgiEnv
    from .request import RunRequest

__all__ = ["chosen_plan", "fresh_plan"]


def fresh_plan(env: AgiEnv, request: RunRequest) -> WorkPlan:
    """Plan the app now: `App.plan(args)` balanced over the request's slots."""
    args = env.app_class.Args.model_validate(request.args)
    partitions = env.app_class().plan(args)
    if not isinstance(partitions, list | tuple):
        raise PlanError(f"{env.app_class.__name__}.plan() returned {type(partitions).__name__}, not a list of Partition",
                        fix="return a list of agi_core.Partition")
    local_capabilities = ("gpu",) if gpu_visible() else ()
    slots = slots_for_mode(request.cluster, request.run_mode, local_capabilities=local_capabilities)
    return build_plan(env.name, request.args, partitions, slots)


def chosen_plan(env: AgiEnv, request: RunRequest, given: WorkPlan | str | Path | None = None) -> WorkPlan:
    """The plan a run executes: ``given`` (or the request's plan file) when there is one, after
    checking it still fits what the app plans today; else a fresh plan."""
    fresh = fresh_plan(env, request)
    if given is None and request.plan_file is None:
        return fresh
    source = given if given is not None else request.plan_file
    chosen = source if isinstance(source, WorkPlan) else WorkPlan.load(source)
    origin = "the given plan" if isinstance(source, WorkPlan) else str(source)
    chosen.check(origin=origin)
    chosen.check_current(fresh, origin=origin)
    return chosen
