"""agi's own version check between this manager, the scheduler and the workers, and each worker's facts.

Dask warns about *any* difference, printing tables when hosts differ only in Python's patch
level (Debian's 3.11.2 against a manager's 3.11.9): noise that hides real problems. agi checks
what breaks a run and nothing else: Python's major.minor, the packages that move data between
processes (dask, distributed, cloudpickle, msgpack), agi_core itself and the app's own version.
A difference there is an `AgiError` naming the hosts, the package, both versions and the fix;
anything else is silent (and Dask's warning is silenced where the client connects).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..base.errors import AgiError
from ..base.hosts import is_local_host

__all__ = ["AGI_DISTRIBUTION", "CHECKED_PACKAGES", "Participant", "VersionMismatch", "WorkerFacts",
           "check_versions", "compare_versions", "worker_facts"]

#: agi_core's distribution name (what workers have installed)
AGI_DISTRIBUTION = "agi-orchestrator"
#: packages whose versions must be equal everywhere: they (un)pickle and frame every message
CHECKED_PACKAGES = ("dask", "distributed", "cloudpickle", "msgpack", AGI_DISTRIBUTION)

Versions = Mapping[str, str | None]


@dataclass(frozen=True)
class Participant:
    """A scheduler or worker, with the package versions it reported."""

    role: str  # "scheduler" or "worker"
    name: str  # its Dask worker name ("scheduler" for the scheduler)
    host: str  # its address
    packages: Versions  # distributed's `get_versions()["packages"]`: name → version, None when missing

    @property
    def local(self) -> bool:
        """On this machine: it may import the app from its source folder instead of an install."""
        return is_local_host(self.host)


@dataclass(frozen=True)
class VersionMismatch:
    """One package whose version somewhere differs from this manager's."""

    package: str
    manager: str | None
    found: str | None
    where: tuple[str, ...]  # "10.0.0.3 (worker 10.0.0.3-0)", "10.0.0.1 (scheduler)"


def python_minor(version: str | None) -> str | None:
    """``3.11.2.final.0`` → ``3.11``: patch levels never break a run."""
    return None if version is None else ".".join(version.split(".")[:2])


def compare_versions(manager: Versions, participants: Iterable[Participant], *, app_distribution: str | None = None,
                     app_version: str | None = None) -> list[VersionMismatch]:
    """The differences that matter between ``manager`` and each participant.

    Python counts by major.minor; `CHECKED_PACKAGES` by exact version. The app must be installed
    at ``app_version`` on every worker of another host; this machine's workers run the source
    folder the manager runs (whatever build metadata lies next to it), so they are not asked.
    """
    found: dict[tuple[str, str | None, str | None], list[str]] = {}

    def differs(package: str, want: str | None, have: str | None, where: str) -> None:
        if want != have:
            found.setdefault((package, want, have), []).append(where)

    for p in participants:
        where = f"{p.host} ({p.role if p.role == 'scheduler' else 'worker ' + p.name})"
        differs("python", python_minor(manager.get("python")), python_minor(p.packages.get("python")), where)
        for package in CHECKED_PACKAGES:
            differs(package, manager.get(package), p.packages.get(package), where)
        if p.role == "worker" and app_distribution and app_version and not p.local:
            differs(app_distribution, app_version, p.packages.get(app_distribution), where)
    return [VersionMismatch(package, want, have, tuple(sorted(where))) for (package, want, have), where in found.items()]


def mismatch_error(mismatches: list[VersionMismatch], app: str) -> AgiError:
    """One error for all the differences: per package, both versions and where."""
    lines = []
    for m in sorted(mismatches, key=lambda m: (m.package, str(m.found))):
        shown = ", ".join(m.where[:5]) + (f" and {len(m.where) - 5} more" if len(m.where) > 5 else "")
        lines.append(f"  {m.package}: {m.manager or 'not installed'} on this manager, {m.found or 'not installed'} on {shown}")
    return AgiError("package versions differ between this manager and the cluster:\n" + "\n".join(lines),
                    fix=f"re-install the hosts from this manager: agi install {app or 'APP'}")


async def _participants(client: Any, packages: list[str]) -> tuple[Participant, dict[str, Participant], dict[str, Any]]:
    """The scheduler's and every worker's reported versions (Dask's ``versions`` handlers: no
    task runs, so this works even where agi_core or the app cannot be imported); workers by
    address, with the scheduler's identity of each."""
    from distributed.comm import get_address_host

    identity = await client.scheduler.identity(n_workers=-1)
    scheduler = await client.scheduler.versions(packages=packages)
    reports = await client.scheduler.broadcast(msg={"op": "versions", "packages": packages}, on_error="return")
    unanswered = {address: report for address, report in reports.items() if not isinstance(report, dict)}
    if unanswered:
        raise _unreachable_workers_error(unanswered, identity["workers"])
    workers = {address: Participant("worker", str(info.get("name")), str(info.get("host") or get_address_host(address)),
                                    (reports.get(address) or {}).get("packages", {}))
               for address, info in identity["workers"].items()}
    return (Participant("scheduler", "scheduler", get_address_host(identity["address"]), scheduler.get("packages", {})),
            workers, identity["workers"])


def _unreachable_workers_error(errors: dict[str, Any], identity: dict[str, Any]) -> AgiError:
    """Workers that joined the scheduler but that it cannot call back: their own connection in
    works, a connection to their port does not (a firewall, most often, or a worker that bound an
    address the scheduler cannot route to)."""
    names = ", ".join(f"{identity.get(address, {}).get('name', address)} at {address} ({type(error).__name__}: {error})"
                      for address, error in sorted(errors.items())[:5])
    more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
    return AgiError(f"the scheduler cannot reach {len(errors)} worker(s) that joined it: {names}{more}",
                    fix="open the workers' ports to the scheduler host (pin them with [cluster.dask] worker_ports; "
                    "`agi cluster ports APP` lists every connection the cluster needs)")


async def check_versions(client: Any, *, app: str, app_distribution: str | None = None, app_version: str | None = None) -> None:
    """Raise `AgiError` when the scheduler or a worker differs from this manager in a way that
    breaks a run (see `compare_versions`); patch-level Python differences are silent."""
    from distributed.versions import get_versions

    packages = [AGI_DISTRIBUTION, *([app_distribution] if app_distribution else [])]
    manager = get_versions(packages)["packages"]
    scheduler, workers, _ = await _participants(client, packages)
    mismatches = compare_versions(manager, [scheduler, *workers.values()], app_distribution=app_distribution,
                                  app_version=app_version)
    if mismatches:
        raise mismatch_error(mismatches, app)


@dataclass(frozen=True)
class WorkerFacts:
    """What a run record keeps about one Dask worker: where it ran, its versions, what it offers."""

    name: str  # its Dask worker name
    address: str  # its Dask address
    host: str  # the host's address
    python: str | None  # "3.11.2"
    agi_core: str | None
    dask: str | None
    distributed: str | None
    app: str | None  # the app's installed version; None when it ran from the source folder
    cores: int | None  # the host's CPU count
    nthreads: int
    memory_limit: int  # bytes; 0: no limit
    gpus: float  # its "GPU" resource
    gpu: Mapping[str, Any] | None = None  # what it sees: `gpus.worker_gpu_facts` (models, CUDA_VISIBLE_DEVICES, numba.cuda, cuDF)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def worker_facts(client: Any, app_distribution: str) -> dict[str, WorkerFacts]:
    """Every connected worker's facts, keyed by Dask worker name."""
    from ..gpus import worker_gpu_facts

    _, workers, identity = await _participants(client, [AGI_DISTRIBUTION, app_distribution])
    cores = await client.run(os.cpu_count, on_error="return")
    gpu = await client.run(worker_gpu_facts, on_error="return")
    facts = {}
    for address, worker in workers.items():
        info, versions, count = identity[address], worker.packages, cores.get(address)
        python = versions.get("python")
        facts[worker.name] = WorkerFacts(
            name=worker.name, address=address, host=worker.host,
            python=".".join(python.split(".")[:3]) if python else None,
            agi_core=versions.get(AGI_DISTRIBUTION), dask=versions.get("dask"), distributed=versions.get("distributed"),
            app=versions.get(app_distribution), cores=count if isinstance(count, int) else None,
            nthreads=int(info.get("nthreads") or 0), memory_limit=int(info.get("memory_limit") or 0),
            gpus=float((info.get("resources") or {}).get("GPU", 0)),
            gpu=gpu.get(address) if isinstance(gpu.get(address), dict) else None,
        )
    return facts
