"""Replacement jobs of a warm Slurm cluster: a run attached to it replaces its ended jobs as a run replaces its own.

A warm cluster (`agi cluster up`) outlives the runs that attach to it, but its jobs end before
it does: at their walltime (their workers retire before it: Dask's ``--lifetime``), cancelled or
preempted. A run attached to it keeps them coming as it would its own (`slurm_requeue`: while it
has work left, ahead of a retirement and after a job ended), with these differences:

- A new job runs the batch script the cluster was started with, recorded in its state file
  (``job_script``, the worker's name left as `NAME_MARK`): the same Python, resources, walltime,
  TLS files and scheduler, whatever the run's own settings say.
- It is named as the cluster's other jobs (``slurm-<j>``, one past the highest ``j`` recorded)
  and recorded in the state file (``jobs``), so `agi cluster status` lists it and `agi cluster
  down` cancels it. It stays when the run ends: the cluster is warm.
- ``[cluster.slurm] max_jobs`` bounds the jobs of the cluster over its life (from `agi cluster
  up` to `agi cluster down`), whichever run submitted them.

Two runs attached at once both see a job end, or both drain its retiring worker; one replaces
it. The state file decides, under its lock (`warm_state`): a run claims the ended job
(``replaced``: ended job id → the new job's name) and reserves the new name (``jobs``: name → ""
until sbatch answers) in one write; a run that finds the claim taken submits nothing and tends
the other run's job from then on. A run whose sbatch fails gives its claim back. `agi cluster
down` marks the state ``stopping`` before it cancels the jobs it names (`WarmClusters.stopping`):
no claim is granted after that, and a run whose sbatch answered meanwhile cancels that job itself.

>>> next_job_name({"slurm-0": "11", "slurm-3": "17"})
'slurm-4'
>>> current_worker_names({"slurm-0": "slurm-0", "slurm-1": "slurm-1"}, ["slurm-2", "slurm-1"])
{'slurm-0': 'slurm-1', 'slurm-1': 'slurm-2'}
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, Notice
from .slurm_names import job_worker_name
from .slurm_queue import cancel_jobs, slurm_command
from .slurm_requeue import TEND_S, JobKeeper, Replacement
from .warm_state import editing

__all__ = ["NAME_MARK", "WarmJobKeeper", "WarmJobs", "current_worker_names", "next_job_name"]

#: the worker's name in a warm cluster's recorded job script (each new job's own replaces it)
NAME_MARK = "@AGI_WORKER_NAME@"


def _index(name: str) -> int:
    """``slurm-<j>`` → ``j`` (-1 for a name of another form)."""
    tail = name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def next_job_name(jobs: dict[str, str]) -> str:
    """The worker name of the cluster's next job: one past the highest ``j`` of ``jobs``' names."""
    return job_worker_name(max((_index(name) for name in jobs), default=-1) + 1)


def current_worker_names(names: dict[str, str], current: list[str]) -> dict[str, str]:
    """Slot → Dask worker name (``names``: ``slurm-<j>`` or ``slurm-<j>-<k>``) with the ``j``-th
    job of the plan served by the ``j``-th of the ``current`` jobs' names (in the order of their
    ``j``), those of jobs that replaced the cluster's first ones; a slot past them keeps its name."""
    ordered = sorted(current, key=_index)
    out = {}
    for slot, worker in names.items():
        job = worker if worker.count("-") == 1 else worker.rpartition("-")[0]  # slurm-<j>[-<k>]
        j = _index(job)
        out[slot] = (ordered[j] if 0 <= j < len(ordered) else job) + worker[len(job):]
    return out


@dataclass(frozen=True)
class Claim:
    """A run's claim on replacing one ended job of a warm cluster (`WarmJobs.claim`)."""

    name: str | None  # the worker name reserved for the replacement: this run submits it; None: it does not
    jobs: int = 0  # the cluster's jobs, the reserved one included
    taken: tuple[str, str] | None = None  # another run's replacement: (its name, its job id, "" while submitted)
    refused: str = ""  # why no replacement, when neither


@dataclass(frozen=True)
class WarmJobs:
    """The state file of one warm Slurm cluster, as the runs attached to it share it."""

    path: Path  # the state file (`WarmClusters.path`)
    started: float  # when the cluster was recorded: a later `agi cluster up` writes another
    script: str  # the job script, with `NAME_MARK` for the worker's name

    @classmethod
    def of(cls, state: dict[str, Any]) -> WarmJobs | None:
        """The shared jobs of a loaded state (`WarmClusters.load`); None for a state written
        before warm clusters recorded their job script (its jobs are not replaced)."""
        if not state.get("job_script") or not state.get("state_file"):
            return None
        return cls(Path(state["state_file"]), float(state.get("started", 0.0)), str(state["job_script"]))

    def _not_ours(self, state: dict[str, Any] | None) -> str:
        """Why ``state`` takes no new job of this cluster; "" when it does."""
        if state is None or state.get("started") != self.started:
            return "the warm cluster was stopped (`agi cluster down`)"
        return "the warm cluster is being stopped (`agi cluster down`)" if state.get("stopping") else ""

    def read(self) -> dict[str, Any] | None:
        """The state now (under the lock, not changed), or None when it is not this cluster's any more."""
        with editing(self.path) as state:
            return None if self._not_ours(state) else state

    def claim(self, ended: str, limit: int) -> Claim:
        """Claim the replacement of the job ``ended`` and reserve its name (see the module's docstring)."""
        with editing(self.path) as state:
            why = self._not_ours(state)
            if why or state is None:
                return Claim(None, refused=why)
            jobs, replaced = state.setdefault("jobs", {}), state.setdefault("replaced", {})
            if ended in replaced:
                return Claim(None, len(jobs), taken=(replaced[ended], jobs.get(replaced[ended], "")))
            if len(jobs) >= limit:
                return Claim(None, len(jobs),
                             refused=f"the warm cluster has {len(jobs)} job(s), [cluster.slurm] max_jobs = {limit}")
            name = next_job_name(jobs)
            jobs[name], replaced[ended] = "", name
            return Claim(name, len(jobs))

    def record(self, name: str, job_id: str) -> bool:
        """Record the job id of the reserved ``name``; False when the cluster is stopping or gone
        (the caller cancels the job: nothing else would)."""
        with editing(self.path) as state:
            if self._not_ours(state) or state is None:
                return False
            state.setdefault("jobs", {})[name] = job_id
            return True

    def release(self, ended: str, name: str) -> None:
        """Give back the claim on ``ended`` and the name reserved with it (its sbatch failed)."""
        with editing(self.path) as state:
            if state is None or state.get("started") != self.started:
                return
            if state.get("jobs", {}).get(name) == "":
                del state["jobs"][name]
            if state.get("replaced", {}).get(ended) == name:
                del state["replaced"][ended]

    async def submit(self, name: str) -> str:
        """sbatch the recorded job script, its workers named ``name``; the new job's id."""
        handle, script = tempfile.mkstemp(prefix="agi-warm-job-", suffix=".sh")
        try:
            with os.fdopen(handle, "w") as out:
                out.write(self.script.replace(NAME_MARK, name))
            answer = await slurm_command(["sbatch", "--parsable", script], what=f"submitting the warm cluster's job {name}")
        finally:
            os.unlink(script)
        return answer.strip().split(";")[0]


class WarmJobKeeper(JobKeeper):
    """`JobKeeper` for a run attached to a warm cluster: its replacements are the cluster's (`WarmJobs`)."""

    def __init__(self, jobs: dict[str, str], shared: WarmJobs, replaced: dict[str, str], *, limit: int,
                 pending_timeout: float) -> None:
        super().__init__(jobs, limit=limit, pending_timeout=pending_timeout)
        self.shared = shared
        for job_id in replaced:  # replaced before this run: not looked at again
            self.ended.setdefault(job_id, "replaced")

    def current(self) -> list[str]:
        """The names of the jobs that serve the plan's slots: those neither ended, as far as this
        run knows, nor replaced ahead of their retirement."""
        return [name for name, job_id in self.jobs.items() if job_id and job_id not in self.ended and job_id not in self.ahead]

    async def tend(self, submit: Callable[[str], Awaitable[str]], *, work_left: bool, emit: EventSink) -> None:
        """`JobKeeper.tend`, after taking in the jobs other runs submitted (this run tends them too)."""
        if time.monotonic() - self._last >= TEND_S:
            self._learn()
        await super().tend(submit, work_left=work_left, emit=emit)

    def _learn(self) -> None:
        state = self.shared.read()
        if state is None:
            return
        now = time.monotonic()
        for name, job_id in state.get("jobs", {}).items():
            if job_id and self.jobs.get(name) != job_id:
                self.jobs[name] = job_id
                self.submitted.setdefault(job_id, now)
        for job_id in state.get("replaced", {}):
            self.ended.setdefault(job_id, "replaced")

    async def _replace(self, name: str, job_id: str, submit: Callable[[str], Awaitable[str]], emit: EventSink,
                       *, why: str | None = None) -> bool:
        """Replace ``job_id`` from the cluster's recorded script (``submit``, the run's own, is
        not used); whether it is replaced now, by this run or by another one attached."""
        what = f"ended ({self.ended[job_id]})" if why is None else why
        claim = self.shared.claim(job_id, self.limit)
        if claim.taken is not None:
            other, other_id = claim.taken
            emit(Notice(f"Slurm job {job_id} ({name}) {what}: another run attached to the warm cluster replaced it "
                        f"(job {other_id or '(being submitted)'}, {other})"))
            return True
        if claim.name is None:
            if not self._said_limit:
                self._said_limit = True
                emit(Notice(f"Slurm job {job_id} ({name}) {what} and is not replaced: {claim.refused}", level="warning"))
            return False
        try:
            new_id = await self.shared.submit(claim.name)
        except AgiError as exc:
            self.shared.release(job_id, claim.name)
            emit(Notice(f"Slurm job {job_id} ({name}) {what}; its replacement was refused: {exc.message}", level="warning"))
            return False
        if not self.shared.record(claim.name, new_id):
            await cancel_jobs([new_id])
            emit(Notice(f"Slurm job {job_id} ({name}) {what}; its replacement {new_id} was cancelled: the warm cluster "
                        "is being stopped (`agi cluster down`)", level="warning"))
            return False
        self.jobs[claim.name] = new_id
        self.submitted[new_id] = time.monotonic()
        self.replacements.append(Replacement(job_id, self.ended.get(job_id, why or ""), new_id, claim.name))
        emit(Notice(f"Slurm job {job_id} ({name}) {what} with work left: replacement job {new_id} ({claim.name}) "
                    f"submitted{' ahead' if why is not None else ''} for the warm cluster "
                    f"({claim.jobs} of [cluster.slurm] max_jobs = {self.limit})"))
        return True
