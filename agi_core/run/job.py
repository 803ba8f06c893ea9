"""What a run hands its executor: the job every worker runs, the execution context around it, and
the part of the plan still to run once the cache has answered.

Separate from `runner` because these are values built from the request, the app and the cache,
once per run; the runner only passes them on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.events import EventSink
from ..base.share_access import ShareAccess
from ..executors import ExecutionContext, JobSpec

if TYPE_CHECKING:
    from ..app.env import AgiEnv
    from ..plan import WorkPlan
    from .caching import RunCache
    from .request import RunRequest

__all__ = ["execution_context", "job_spec", "remaining"]


def job_spec(env: AgiEnv, request: RunRequest, run_dir: Path, run_id: str, cache: RunCache | None,
             audit: dict[str, str]) -> JobSpec:
    """The job of run ``run_id``: the app, its args, where results go, the cache and the audit's
    digests (partition -> the digest its worker compares with)."""
    return JobSpec(env.src_dir, env.module_name, env.class_name, request.args, request.mode,
                   run_dir / "out", run_id=run_id, cache_dir=cache.store.root if cache else None,
                   cache_kernel=cache.keys.kernel if cache else "", refresh=request.refresh, audit=audit,
                   retries=request.cluster.retries,
                   inputs_base=request.share, cache_key_id=cache.store.key.id if cache else "",
                   share_umask=ShareAccess.of(request.cluster.share.group_access).umask,
                   kernels=request.shape.kernels, kernel_threads=request.shape.kernel_threads)


def execution_context(env: AgiEnv, request: RunRequest, run_id: str, job: JobSpec, emit: EventSink, python: Any,
                      cache: RunCache | None) -> ExecutionContext:
    """What the executor gets beside the job: the cluster settings, the events' sink, the
    interpreter of local worker processes (``python``, None: this one) and the cache keys."""
    return ExecutionContext(run_id, env.name, job, request.cluster, emit, python,
                            app_distribution=env.distribution, app_version=env.version(),
                            keys=cache.keys.keys if cache else {}, shape=request.shape)


def remaining(plan: WorkPlan, done: Mapping[str, object]) -> WorkPlan:
    """The part of ``plan`` still to run: its partitions not in ``done`` (those found in the
    cache), on the same slots. Dependencies on done partitions stay: the driver has their results."""
    if not done:
        return plan
    from ..plan import WorkPlan

    return WorkPlan(plan.app, plan.args, plan.slots, [p for p in plan.partitions if p.id not in done],
                    {slot: [pid for pid in ids if pid not in done] for slot, ids in plan.assignment.items()}, plan.fingerprint)
