"""The work plan of a request: the app's partitions balanced over the slots its mode has, or an
edited plan file, checked against what the app plans today."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.errors import PlanError
from ..gpus import GPU, gpu_here, simulated
from ..plan import Slot, WorkPlan, build_plan, slots_for_mode
from .app_errors import plan_error

if TYPE_CHECKING:
    from ..app import Partition
    from ..app.env import AgiEnv
    from .request import RunRequest

__all__ = ["check_gpu_slots", "chosen_plan", "fresh_plan", "request_slots"]


def fresh_plan(env: AgiEnv, request: RunRequest) -> WorkPlan:
    """Plan the app now: `App.plan(args)` balanced over the request's slots."""
    args = env.app_class.Args.model_validate(request.args)
    try:
        partitions = env.app_class().plan(args)
    except Exception as exc:  # the app's own code: said as an error with its fix, not a traceback
        raise plan_error(env.name, exc) from exc
    if not isinstance(partitions, list | tuple):
        raise PlanError(f"{env.app_class.__name__}.plan() returned {type(partitions).__name__}, not a list of Partition",
                        fix="return a list of agi_core.Partition")
    if not partitions and not env.app_class.allow_empty_plan:
        shown = ", ".join(f"{k}={v!r}" for k, v in list(request.args.items())[:6]) or "no args"
        raise PlanError(f"app '{env.name}': {env.app_class.__name__}.plan() returned no partitions ({shown}): nothing would run",
                        fix="check the args and the inputs they select; if an empty plan is normal for this app, "
                            f"set allow_empty_plan = True on {env.app_class.__name__} (docs/apps.md)")
    check_reads(partitions, set(env.app_class.Args.model_fields))
    slots = request_slots(request)
    check_gpu_slots(request, slots, [p.id for p in partitions if GPU in p.needs])
    speeds = {GPU: request.cluster.gpu_speed} if request.shape.gpu != "off" else None
    return build_plan(env.name, request.args, partitions, slots, speeds=speeds)


def check_reads(partitions: Sequence[Partition], arg_names: set[str]) -> None:
    """Every name in a partition's ``reads`` is an arg of the app, with the cache on or off (the
    cache keys rely on it; a typo must not wait for the day the cache is used)."""
    for part in partitions:
        reads = getattr(part, "reads", None)  # not a Partition: build_plan says so, naming it
        if not reads or arg_names.issuperset(reads):  # the usual case, without a list per partition
            continue
        unknown = [name for name in reads if name not in arg_names]
        if unknown:
            raise PlanError(f"partition '{part.id}' reads arg(s) {', '.join(unknown)}, which the app's Args do not have "
                            f"(it has {', '.join(sorted(arg_names)) or 'none'})", fix="correct Partition(reads=...) in App.plan()")


def request_slots(request: RunRequest) -> list[Slot]:
    """The slots of the request's mode, each offering ``"gpu"`` when its worker owns a GPU: on a
    cluster as `gpus.gpu_workers` decides from the hosts' probed or declared GPUs, locally when
    this process may use one: with the rapids bit, this machine's slot k owns its k-th GPU, as a
    cluster's worker k would (the pool gives it that device: `executors.slot_env`), and every slot
    offers one under numba's CUDA simulator."""
    shape = request.shape
    if shape.cluster:
        from ..gpus import gpus_of  # remembered facts, and GPU probing below: a CPU run of this machine needs neither

        return slots_for_mode(request.cluster, shape, gpus=gpus_of(request.cluster.worker_map()))
    if shape.gpu == "off" or not gpu_here()[0]:
        return slots_for_mode(request.cluster, shape)
    from ..gpus import local_gpus

    here = local_gpus()
    return slots_for_mode(request.cluster, shape, local_capabilities=(GPU,) if simulated() and not here else (),
                          gpus=dict.fromkeys(request.cluster.local_worker_map(), here))


def check_gpu_slots(request: RunRequest, slots: list[Slot], needing: list[str]) -> None:
    """Before anything runs: partitions that need a GPU have GPU slots, and ``rapids = "require"``
    finds a GPU on every worker. ``needing``: the ids of the partitions that need one. The errors
    name the hosts without a GPU."""
    without: dict[str, int] = {}
    for slot in slots:
        if GPU not in slot.capabilities:
            without[slot.host] = without.get(slot.host, 0) + 1
    hosts = ", ".join(f"{host} ({count} worker{'s' if count > 1 else ''})" for host, count in without.items())
    how = ("GPUs are found by `agi install` / `agi doctor` (nvidia-smi on each host); declare a host's GPU by hand with "
           '[cluster.workers] "HOST" = {count = 1, capabilities = ["gpu"]}')
    if needing and sum(without.values()) == len(slots):
        more = f" (and {len(needing) - 1} more)" if len(needing) > 1 else ""
        raise PlanError(f"partition '{needing[0]}'{more} needs gpu, but no worker has a GPU: no GPU on {hosts}", fix=how)
    if request.shape.gpu == "require" and without:
        raise PlanError(f'rapids = "require", but workers have no GPU: no GPU on {hosts}',
                        fix=f"{how}; or remove those hosts from the worker map, or set rapids = true to run the CPU "
                            "kernels there (the record says so)")


def chosen_plan(env: AgiEnv, request: RunRequest, given: WorkPlan | str | Path | None = None) -> WorkPlan:
    """The plan a run executes: ``given`` (or the request's plan file) when there is one, after
    checking it still fits what the app plans today; else a fresh plan."""
    fresh = fresh_plan(env, request)
    if given is None and request.plan_file is None:
        return fresh
    source = given if given is not None else request.plan_file
    origin = "the given plan" if isinstance(source, WorkPlan) else str(source)
    if isinstance(source, WorkPlan):
        chosen = source
        chosen.check(origin=origin, current=fresh)
    else:  # checked as it is read; an edit of its partitions or args is named by comparing with `fresh`
        chosen = WorkPlan.load(source, current=fresh)
    chosen.check_current(fresh, origin=origin)
    return chosen
