"""Keep a Slurm run's worker jobs coming while it has work: replace the ones that end, cancel the
ones that wait too long.

A worker job ends before the run does when it is cancelled (``scancel``), preempted, fails (a
node dies, the worker cannot start) or reaches its walltime (its workers retire before it:
Dask's ``--lifetime``, `SlurmSettings.lifetime`). While the run has work left, each ended job is
replaced by a new one whose workers get a new name (``slurm-<j>`` with the next ``j``: a worker of
the old job that the scheduler has not dropped yet cannot collide with it) and join the run late
(`executors.dask_elastic`). At most ``[cluster.slurm] max_jobs`` jobs are submitted in all, so a
job that can never start is not replaced forever.

A job whose worker retires before the walltime is replaced ahead (`JobKeeper.replace_ahead`,
called when the run stops giving that worker work: `executors.dask_retire`): the new job's
workers join while the old one finishes its running batch, and the old job is not replaced again
when it ends.

A job still pending ``pending_timeout`` seconds after it was submitted is cancelled, and a
warning names Slurm's reason (squeue's ``%r``): the run goes on with the workers it has, and only
fails when none is left (`DaskExecutor`).

>>> keeper = JobKeeper({"slurm-0": "11"}, limit=2, pending_timeout=600)
>>> keeper.next_name(), keeper.next_name()
('slurm-1', 'slurm-2')
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..base.errors import AgiError
from ..base.events import EventSink, Notice
from ..base.hosts import slot_name
from .slurm_options import SLURM_HOST
from .slurm_queue import JobState, cancel_jobs, job_states

__all__ = ["JobKeeper", "Replacement"]

#: job states in which a job still runs its workers or will (REQUEUED: preempted, back in the queue)
ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "RESIZING")
#: seconds between two looks at the queue while a run goes
TEND_S = 2.0


@dataclass(frozen=True)
class Replacement:
    """A job that ended while work remained, and the one submitted for it."""

    ended: str  # the job id that ended
    why: str  # "CANCELLED", "no longer queued", ...
    job_id: str  # its replacement's id
    name: str  # its replacement's worker name


class JobKeeper:
    """The jobs of one run (worker name -> Slurm job id, every one ever submitted), when each was
    submitted, and why each one that ended did."""

    def __init__(self, jobs: dict[str, str], *, limit: int, pending_timeout: float) -> None:
        self.jobs = jobs  # shared with the backend: it cancels them all when the cluster closes
        self.limit = limit
        self.pending_timeout = pending_timeout
        now = time.monotonic()
        self.submitted = dict.fromkeys(jobs.values(), now)
        self.ended: dict[str, str] = {}  # job id -> why it ended
        self.replacements: list[Replacement] = []
        self._next = len(jobs)
        self._last = 0.0
        self._said_limit = False
        self.ahead: set[str] = set()  # the job ids replaced before they ended (their workers retire)

    def next_name(self) -> str:
        """The worker name of the next job (``slurm-<j>``, one past the last one)."""
        name = slot_name(SLURM_HOST, self._next)
        self._next += 1
        return name

    async def tend(self, submit: Callable[[str], Awaitable[str]], *, work_left: bool, emit: EventSink) -> None:
        """One look at the queue (at most every `TEND_S`): cancel jobs pending too long, note the
        jobs that ended, and while ``work_left`` submit a replacement for each (``submit(name)``
        sbatches one job whose workers are named ``name`` and returns its id)."""
        now = time.monotonic()
        if now - self._last < TEND_S:
            return
        self._last = now
        live = {name: job_id for name, job_id in self.jobs.items() if job_id not in self.ended}
        try:
            states = await job_states(live.values())
        except AgiError:
            return  # Slurm does not answer now: look again later
        for name, job_id in live.items():
            state = states.get(job_id)
            if state is not None and state.state == "PENDING" and now - self.submitted.get(job_id, now) > self.pending_timeout:
                await self._cancel_pending(name, state, now, emit)
            elif state is None or state.state not in ALIVE:
                self.ended[job_id] = state.state if state is not None else "no longer queued"
                if work_left and job_id not in self.ahead:
                    await self._replace(name, job_id, submit, emit)

    async def replace_ahead(self, worker: str, submit: Callable[[str], Awaitable[str]], *, work_left: bool, emit: EventSink) -> None:
        """The Dask worker ``worker`` (``slurm-<j>``, or ``slurm-<j>-<k>`` with several per job)
        retires soon, before its job's walltime: while ``work_left``, submit the job's replacement
        now, once per job, so that its workers join before the old ones leave."""
        name = worker if worker in self.jobs else worker.rpartition("-")[0]
        job_id = self.jobs.get(name)
        if not work_left or job_id is None or job_id in self.ended or job_id in self.ahead:
            return
        if await self._replace(name, job_id, submit, emit, why="retires before its walltime"):
            self.ahead.add(job_id)

    async def _cancel_pending(self, name: str, state: JobState, now: float, emit: EventSink) -> None:
        waited = now - self.submitted[state.job_id]
        await cancel_jobs([state.job_id])
        self.ended[state.job_id] = f"cancelled after {waited:.0f} s pending (reason: {state.reason})"
        emit(Notice(f"Slurm job {state.job_id} ({name}) still pending after {waited:.0f} s (reason: {state.reason}): "
                    "cancelled; the run goes on with the workers it has ([cluster.slurm] pending_timeout)", level="warning"))

    async def _replace(self, name: str, job_id: str, submit: Callable[[str], Awaitable[str]], emit: EventSink,
                       *, why: str | None = None) -> bool:
        """Submit a replacement for ``job_id``: it ended (``why`` None: `ended` says why) or its
        workers retire (``why``). Whether one was submitted."""
        what = f"ended ({self.ended[job_id]})" if why is None else why
        if len(self.jobs) >= self.limit:
            if not self._said_limit:
                self._said_limit = True
                emit(Notice(f"Slurm job {job_id} ({name}) {what} and is not replaced: this run submitted "
                            f"{len(self.jobs)} job(s), [cluster.slurm] max_jobs = {self.limit}", level="warning"))
            return False
        new_name = self.next_name()
        try:
            new_id = await submit(new_name)
        except AgiError as exc:
            emit(Notice(f"Slurm job {job_id} ({name}) {what}; its replacement was refused: {exc.message}", level="warning"))
            return False
        self.jobs[new_name] = new_id
        self.submitted[new_id] = time.monotonic()
        self.replacements.append(Replacement(job_id, self.ended.get(job_id, why or ""), new_id, new_name))
        emit(Notice(f"Slurm job {job_id} ({name}) {what} with work left: replacement job {new_id} ({new_name}) "
                    f"submitted{' ahead' if why is not None else ''} ({len(self.jobs)} of [cluster.slurm] max_jobs = {self.limit})"))
        return True
