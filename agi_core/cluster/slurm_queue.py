"""Slurm's command line, as agi needs it: is Slurm reachable, where are our jobs, cancel them.

Every call runs a Slurm client command (``sinfo``, ``squeue``, ``scancel``) on this machine with
a timeout, and turns its failure into an `AgiError` that says which command failed, Slurm's own
words, and the fix. The parsing is pure, so it is shown here:

>>> parse_partitions("debug*|up\\ngpu|down\\n")
{'debug': 'up', 'gpu': 'down'}
>>> states = parse_jobs("12|RUNNING|None|node1\\n13|PENDING|JobHeldUser|\\n")
>>> states["13"]
JobState(job_id='13', state='PENDING', reason='JobHeldUser', node='')
>>> pending_report([states["13"]], 5)
'1 Slurm job(s) still pending after 5 s: job 13 (PENDING, reason: JobHeldUser)'
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..base.errors import AgiError

__all__ = ["CANCEL_WAIT", "JobState", "cancel_jobs", "check_slurm", "job_states", "parse_jobs", "parse_partitions",
           "pending_report", "submit_error", "wait_gone", "wait_until_running"]

#: seconds a Slurm client command may take (it retries an unreachable controller for a while)
COMMAND_TIMEOUT = 60.0
_FIX_UNREACHABLE = ("run agi on a node that can submit jobs (a login node) with the Slurm client installed; check "
                    "`sinfo` works there (slurmctld running, SLURM_CONF, munge)")


@dataclass(frozen=True)
class JobState:
    """One job as ``squeue`` shows it."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str  # why it waits ("Resources", "Priority", "JobHeldUser", ...); "None" while running
    node: str  # where it runs ("" while pending)


async def slurm_command(args: Sequence[str], *, what: str, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a Slurm client command here; its stdout. Raises `AgiError` naming the command when it
    is missing, fails or hangs."""
    if shutil.which(args[0]) is None:
        raise AgiError(f"Slurm is not reachable from this machine: `{args[0]}` is not on PATH ({what})",
                       fix=_FIX_UNREACHABLE)
    process = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AgiError(f"Slurm did not answer `{' '.join(args)}` within {timeout:g} s ({what})", fix=_FIX_UNREACHABLE) from None
    if process.returncode != 0:
        words = (err or out).decode(errors="replace").strip() or f"exit status {process.returncode}"
        raise AgiError(f"Slurm refused `{' '.join(args)}` ({what}): {words}",
                       fix=_FIX_UNREACHABLE if "contact" in words.lower() or "munge" in words.lower() else None)
    return out.decode(errors="replace")


def parse_partitions(text: str) -> dict[str, str]:
    """``sinfo -h -o '%P|%a'`` → partition → availability (the default one loses its ``*``)."""
    partitions = {}
    for line in text.splitlines():
        if "|" in line:
            name, available = line.split("|", 1)
            partitions[name.strip().rstrip("*")] = available.strip()
    return partitions


async def check_slurm(partition: str | None) -> dict[str, str]:
    """Slurm answers here, and ``partition`` (None: the default) exists and is up; returns the
    partitions. Raises `AgiError` naming ``[cluster.slurm] partition`` when it does not fit."""
    partitions = parse_partitions(await slurm_command(["sinfo", "-h", "-o", "%P|%a"], what="checking that Slurm answers"))
    if partition is not None and partition not in partitions:
        raise AgiError(f"[cluster.slurm] partition = {partition!r}: Slurm has no such partition",
                       fix=f"set it to one of: {', '.join(sorted(partitions)) or '(none: ask your admins)'}")
    if partition is not None and partitions[partition] != "up":
        raise AgiError(f"[cluster.slurm] partition = {partition!r} is {partitions[partition]}, not up",
                       fix="pick another partition, or ask your HPC admins when it comes back")
    return partitions


def parse_jobs(text: str) -> dict[str, JobState]:
    """``squeue -h -o '%i|%T|%r|%N'`` → job id → its state."""
    jobs = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            jobs[parts[0]] = JobState(parts[0], parts[1], parts[2], parts[3])
    return jobs


async def job_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """The state of each of ``job_ids`` that Slurm still lists (finished jobs drop out)."""
    ids = [job_id for job_id in job_ids if job_id]
    if not ids:
        return {}
    try:
        text = await slurm_command(["squeue", "-h", "-o", "%i|%T|%r|%N", "-j", ",".join(ids)], what="reading the jobs' states")
    except AgiError as exc:
        if "Invalid job id" in exc.message:  # every one of them is gone (and purged)
            return {}
        raise
    return parse_jobs(text)


def pending_report(pending: Sequence[JobState], seconds: float) -> str:
    """What to say about jobs still waiting in the queue."""
    jobs = ", ".join(f"job {job.job_id} ({job.state}, reason: {job.reason})" for job in pending)
    return f"{len(pending)} Slurm job(s) still pending after {seconds:g} s: {jobs}"


async def wait_until_running(job_ids: Sequence[str], timeout: float, *, poll: float = 2.0,
                             need: int | None = None) -> dict[str, JobState]:
    """Wait until ``need`` of the jobs run (default: every one); their states. Raises `AgiError`
    with Slurm's reason for each job still pending after ``timeout`` s while fewer run, or naming
    the jobs that ended before they ran a worker when too few are left to reach ``need``. The
    jobs beyond ``need`` may still be pending: their workers join the run when they start.

    ``squeue`` is asked after 0.1 s, then twice as late each time up to every ``poll`` s: an
    idle cluster starts jobs within a second, a busy one is not asked more than it needs."""
    need = len(job_ids) if need is None else max(1, min(need, len(job_ids)))
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    pause = 0.1
    while True:
        states = await job_states(job_ids)
        gone = [job_id for job_id in job_ids if job_id not in states or states[job_id].state not in ("PENDING", "CONFIGURING", "RUNNING")]
        if gone and len(job_ids) - len(gone) < need:
            raise AgiError(f"Slurm job(s) {', '.join(gone)} ended before their Dask workers could run "
                           f"({', '.join(states[j].state if j in states else 'no longer queued' for j in gone)})",
                           fix="read the jobs' output files in [cluster.slurm] log_directory (a wrong [cluster.slurm] python? "
                               "run `agi install APP`)")
        running = [job_id for job_id in job_ids if job_id in states and states[job_id].state == "RUNNING"]
        if len(running) >= need:
            return {job_id: states[job_id] for job_id in job_ids if job_id in states}
        if time.monotonic() >= deadline:
            waiting = [states[job_id] for job_id in job_ids if job_id in states and states[job_id].state != "RUNNING"
                       and job_id not in gone]
            raise AgiError(pending_report(waiting, round(time.monotonic() - start)),
                           fix="ask for less (cores, memory, gpus, walltime in [cluster.slurm]), pick another partition, "
                               "or wait longer: [cluster.slurm] pending_timeout"
                               + (f"; {len(running)} job(s) run, the run starts at {need} ([cluster] min_workers)"
                                  if need < len(job_ids) else ""))
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, poll)


async def cancel_jobs(job_ids: Iterable[str]) -> None:
    """``scancel`` the jobs (those already gone are ignored by Slurm); never raises, because it
    runs while stopping, when Slurm may be the reason we stop."""
    ids = [job_id for job_id in job_ids if job_id]
    if ids:
        try:
            await slurm_command(["scancel", *ids], what="cancelling the worker jobs", timeout=30)
        except AgiError:
            pass


#: seconds `wait_gone` waits for cancelled jobs to leave Slurm's queue
CANCEL_WAIT = 30.0


def submit_error(exc: BaseException) -> AgiError:
    """sbatch's refusal (dask-jobqueue raises it as a RuntimeError holding the command's output)."""
    text = str(exc)
    words = text.split("stderr:", 1)[-1].strip() or text.strip()
    return AgiError(f"Slurm refused the worker job (sbatch): {words}",
                    fix="check [cluster.slurm] partition, account, cores, memory, gpus and job_extra against what the "
                        "partition offers (`sinfo -o '%P %c %m %G'`)")


async def wait_gone(job_ids: list[str], timeout: float = CANCEL_WAIT) -> None:
    """Wait until Slurm lists none of ``job_ids`` as queued or running (a cancelled job is
    COMPLETING while its processes are killed); gives up quietly after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while job_ids and loop.time() < deadline:
        try:
            states = await job_states(job_ids)
        except AgiError:
            return
        if not any(s.state in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED") for s in states.values()):
            return
        await asyncio.sleep(0.3)
