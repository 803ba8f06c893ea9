"""Building a run's `RunRecord` from its request, plan and outcomes (what the runner writes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..base.modes import Mode
from ..provenance import (
    AppRecord,
    ManagerRecord,
    ModeRecord,
    PlanRecord,
    RunRecord,
    Totals,
    WorkerRecord,
    iso,
)

if TYPE_CHECKING:
    from ..app.env import AgiEnv
    from ..executors import Outcome
    from ..plan import WorkPlan
    from .request import RunRequest

__all__ = ["first_record", "local_capabilities", "local_versions", "totals", "worker_records"]


def first_record(env: AgiEnv, request: RunRequest, plan: WorkPlan, run_id: str, started: float) -> RunRecord:
    """The record as written when the run starts: everything but outcomes."""
    mode = Mode(request.mode)
    return RunRecord(
        run_id=run_id, status="running",
        app=AppRecord(name=env.name, version=env.version(), code_hash=env.code_hash(), git_commit=env.git_commit(),
                      project_dir=str(env.project_dir)),
        request=request.to_dict(), args=request.args, mode=ModeRecord(value=int(mode), letters=mode.letters),
        settings_hash=request.settings_hash, settings_file=request.settings_file,
        plan=PlanRecord(fingerprint=plan.fingerprint, partitions=len(plan.partitions), slots=[s.name for s in plan.slots]),
        executor=request.executor,
        manager=ManagerRecord(host=os.uname().nodename, pid=os.getpid(), python=python_version(), platform=platform_name()),
        started=iso(started), totals=Totals(partitions=len(plan.partitions), not_run=len(plan.partitions)),
    )


def python_version() -> str:
    """`platform.python_version()` (``3.11.7``) without importing `platform` (its import compiles
    dozens of regular expressions: milliseconds of every run)."""
    return sys.version.split()[0].rstrip("+")


def platform_name() -> str:
    """`platform.platform()` as it reads on Linux (``Linux-6.1.0-x86_64-with-glibc2.36``), without
    importing `platform` nor starting the ``uname -p`` process it runs for a processor name that
    it then leaves out."""
    system, _, release, _, machine = os.uname()
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
    except (ValueError, OSError):
        libc = ""
    return f"{system}-{release}-{machine}" + (f"-with-{libc.replace(' ', '')}" if libc else "")


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """The installed versions of distributions ``names``, read from the names of the
    ``NAME-VERSION.dist-info`` folders on ``sys.path`` (what `importlib.metadata.version` finds,
    without importing it and the email parser it loads: milliseconds of every run); a name not
    found that way is asked of `importlib.metadata`."""
    wanted = {_normalise(name): name for name in names}
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            children = os.listdir(entry or ".")
        except OSError:
            continue
        for child in children:
            if child.endswith(".dist-info"):
                name, _, version = child[: -len(".dist-info")].partition("-")
                key = _normalise(name)
                if key in wanted and wanted[key] not in found and version:
                    found[wanted[key]] = version
        if len(found) == len(wanted):
            return found
    missing = [name for name in wanted.values() if name not in found]
    if missing:
        import importlib.metadata

        for name in missing:
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                pass
    return found


def _normalise(name: str) -> str:
    """A distribution name as dist-info folders spell it (PEP 503 normalised, ``_`` for ``-``)."""
    return "".join("_" if c in "-_." else c for c in name.lower())


def totals(plan: WorkPlan, outcomes: Iterable[Outcome]) -> Totals:
    counts = {"ok": 0, "failed": 0, "skipped": 0, "cached": 0}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    done = sum(counts.values())
    return Totals(partitions=len(plan.partitions), **counts, not_run=len(plan.partitions) - done)


def local_versions(app_distribution: str, app_version: str) -> dict[str, str]:
    """The versions that matter for reproducing a run, in this process (local workers run this
    interpreter and the app's source folder, so the app's version is its pyproject's)."""
    versions = {"python": python_version(), **installed_versions(("agi-orchestrator", "dask", "distributed"))}
    versions[app_distribution] = app_version
    return versions


def local_capabilities(gpu: bool) -> dict[str, Any]:
    """This machine's cores and, when the run may use GPU kernels (``shape.gpu`` not "off"), its GPUs (`gpus.worker_gpu_facts`): what the
    record says of workers that ran here."""
    facts: dict[str, Any] = {"cores": os.cpu_count()}
    if gpu:
        from ..gpus import worker_gpu_facts

        facts.update(worker_gpu_facts())
    return facts


def worker_records(outcomes: Iterable[Outcome], facts: Mapping[str, WorkerRecord], local: WorkerRecord | None) -> dict[str, WorkerRecord]:
    """Worker name → its record: where it ran and with which kernels (from the outcomes), its
    versions and capabilities (from the executor's facts, else this machine's for local workers).
    Its slot is the one it serves, even when its first partition was another slot's (``ran_slot``)."""
    workers: dict[str, WorkerRecord] = {}
    for outcome in outcomes:
        if outcome.worker and outcome.worker not in workers:
            base = facts.get(outcome.worker) or local or WorkerRecord()
            workers[outcome.worker] = base.model_copy(update={"host": outcome.host or base.host, "slot": outcome.ran_slot or outcome.slot,
                                                              "kernel": outcome.kernel, "device": outcome.device,
                                                              "job_id": outcome.job_id or base.job_id})
    return workers

