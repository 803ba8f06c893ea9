"""Resume: run a failed, interrupted or abandoned run again, with its own request and plan.

Nothing is replayed from the old record: every partition the old run finished was stored in the
cache by the worker that computed it, so the new run finds those results by their keys and
computes only what failed, was skipped or never finished. That is why resuming works the same
after a failed partition, a Ctrl-C, a manager killed with SIGKILL, or a lost scheduler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.errors import AgiError
from ..base.share_access import ShareAccess
from ..provenance import RunStore
from .request import RunRequest

if TYPE_CHECKING:
    from ..app.env import AgiEnv

__all__ = ["RESUMABLE", "resume_request"]

RESUMABLE = ("failed", "interrupted", "abandoned")


def resume_request(env: AgiEnv, base: RunRequest, run: str) -> RunRequest:
    """The request that resumes ``run`` (an id, a unique prefix, a run folder, or ``last``: the
    newest run of this app), found under the share of ``base`` (the caller's resolved request,
    which gives nothing else)."""
    store = RunStore(base.share, ShareAccess.of(base.cluster.share.group_access))
    if run in ("last", "latest"):  # the newest run of this app, not of any app
        records = store.list(env.name)
        if not records:
            raise AgiError(f"no runs of app '{env.name}' under {store.root}", fix=f"run it first: agi run {env.name}")
        record = records[0]
    else:
        record = store.find(run)
    if record.app.name != env.name:
        raise AgiError(f"run {record.run_id} is a run of app '{record.app.name}', not '{env.name}'",
                       fix=f"agi run {record.app.name} --resume {record.run_id}")
    if record.status not in RESUMABLE:
        why = {"ok": "it finished ok (a plain re-run reuses its cached results)",
               "running": "it is still running (its manager is alive)"}.get(record.status, f"its status is {record.status}")
        raise AgiError(f"cannot resume run {record.run_id}: {why}", fix="resume a failed, interrupted or abandoned run (agi runs list)")
    if not record.request:
        raise AgiError(f"cannot resume run {record.run_id}: its record has no request (written by an older agi_core)",
                       fix=f"run it again: agi run {env.name}")
    old = RunRequest.model_validate(record.request)
    if not old.use_cache:
        raise AgiError(f"cannot resume run {record.run_id}: it ran with --no-cache, so none of its results were kept",
                       fix=f"run it again: agi run {env.name}")
    run_dir = store.run_dir(record.app.name, record.run_id)
    plan_file = run_dir / record.plan.file
    if not plan_file.is_file():
        raise AgiError(f"cannot resume run {record.run_id}: its plan {plan_file} is missing", fix=f"run it again: agi run {env.name}")
    return old.model_copy(update={"resume": record.run_id, "plan_file": str(plan_file), "refresh": (), "step": base.step})
