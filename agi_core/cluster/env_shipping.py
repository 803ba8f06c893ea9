"""Ship a run's environment to Dask processes nobody logs into (a Gateway's, a Kubernetes pod's).

`agi install` reaches workers over SSH; a Gateway's scheduler and workers run an image instead.
`ship_environment` sends them the same wheelhouse `agi install` builds (agi_core's wheel, the
app's wheel and every pinned dependency, `install.artifacts`) through Dask itself: a scheduler
plugin and a worker plugin (`env_remote`, sent by value since the image has no agi_core) install
it with uv into a folder per code hash and put it first on ``sys.path`` of the running process.
Workers that join later get the plugin from the scheduler. Then the usual version check
(`versions.check_versions`) confirms agi_core and Dask match on every process.

Nothing is shipped twice: a cluster whose scheduler runs the plugin of this code hash already (a
warm cluster's second run) gets nothing (one scheduler round trip), and a process that has the
environment on disk already activates it without installing.

Why this way and not workers started from a venv: a Gateway starts its workers itself, from the
command its administrator configured, so agi cannot choose their interpreter; the running process
can only extend its own ``sys.path``. That requires the image's Python to have the manager's
major.minor version (the wheels are built for it): `check_participants` refuses any other, naming
the worker, before anything is built or sent.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, Phase, ignore
from . import env_remote

__all__ = ["ShipReport", "check_participants", "ship_environment", "wheel_target"]


@dataclass
class ShipReport:
    """What `ship_environment` did: ``shipped`` False when the cluster had the environment already."""

    key: str
    shipped: bool
    seconds: float
    bytes: int = 0
    processes: dict[str, str] = field(default_factory=dict)  # "scheduler" / worker name -> "installed" | "present"


def _by_value() -> None:
    """Have cloudpickle send `env_remote`'s code with its functions and plugins (the image
    cannot import agi_core). Idempotent."""
    import cloudpickle

    if env_remote.__name__ not in cloudpickle.list_registry_pickle_by_value():
        cloudpickle.register_pickle_by_value(env_remote)


def check_participants(facts: dict[str, dict[str, Any]]) -> None:
    """Refuse processes that cannot use a shipped environment: another Python minor version than
    this manager's (the wheels are built for it, and it is added to the running process), or no
    uv. ``facts``: process name -> `env_remote.probe`'s answer (or the exception it raised)."""
    manager = f"{sys.version_info[0]}.{sys.version_info[1]}"
    problems = []
    for name, fact in sorted(facts.items()):
        if not isinstance(fact, dict):
            problems.append(f"{name}: cannot be asked ({type(fact).__name__}: {fact})")
            continue
        where = f"{name} on {fact.get('host') or '?'}"
        if fact.get("python_minor") != manager:
            problems.append(f"{where} runs Python {fact.get('python')} ({fact.get('executable')}), this manager {manager}")
        if not fact.get("uv") and not fact.get("present"):
            problems.append(f"{where} has no uv (not on PATH, not beside {fact.get('executable')}, no uv package)")
    if problems:
        raise AgiError("the Gateway's processes cannot receive the app's environment:\n  " + "\n  ".join(problems),
                       fix=f"use an image with Python {manager} and uv (pip install uv) for the scheduler and workers "
                           "(e.g. [cluster.gateway] cluster_options = {image = \"...\"}), or install the app in the image "
                           "and set [cluster.gateway] ship_environment = false")


async def _facts(client: Any, root: str, key: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """`env_remote.probe` on the scheduler and every worker, by name; and worker address -> name."""
    identity = await client.scheduler.identity(n_workers=-1)
    names = {address: str(info.get("name")) for address, info in identity["workers"].items()}
    answers = await client.run(env_remote.probe, root, key, on_error="return")
    facts: dict[str, Any] = {f"worker {names.get(address, address)}": answer for address, answer in answers.items()}
    try:
        facts["scheduler"] = await client.run_on_scheduler(env_remote.probe, root, key)
    except Exception as exc:  # noqa: BLE001 - reported with the process it concerns
        facts["scheduler"] = exc
    return facts, names


def wheel_target(facts: dict[str, dict[str, Any]]) -> Any:
    """The wheel target of the processes: their Python, architecture and the oldest glibc among them."""
    from ..install.artifacts import Target

    known = [fact for fact in facts.values() if isinstance(fact, dict)]
    arches = sorted({fact["arch"] for fact in known})
    if len(arches) > 1:
        raise AgiError(f"the Gateway's processes run on several architectures ({', '.join(arches)})",
                       fix="give the scheduler and workers one architecture (cluster_options), "
                           "or ship nothing: ship_environment = false")
    glibcs = [tuple(fact["glibc"]) for fact in known if fact.get("glibc")]
    return Target(known[0]["python_minor"], arches[0], min(glibcs) if glibcs else None)


def _env_key(artifacts: Any, target: Any) -> str:
    digest = hashlib.sha256(target.key.encode())
    for name, sha in sorted(artifacts.files.items()):
        digest.update(f"{name}\0{sha}\0".encode())
    digest.update(artifacts.lock.read_bytes())
    return digest.hexdigest()


async def ship_environment(client: Any, *, app: str, project_dir: str | Path, root: str, find_links: tuple[str, ...] = (),
                           cache_dir: Path | None = None, emit: EventSink = ignore) -> ShipReport:
    """Make the app's environment (agi_core, the app, their pinned dependencies) importable on
    the scheduler and every worker of ``client``'s cluster, now and for workers that join later.

    Raises `AgiError` naming the process and what it lacks (Python version, uv) or uv's error.
    """
    from ..app.env import AgiEnv
    from ..base import paths
    from ..install.artifacts import ArtifactBuilder

    start = time.perf_counter()
    _by_value()
    facts, names = await _facts(client, root, "")
    check_participants(facts)
    target = wheel_target(facts)
    env = AgiEnv(app=app, apps_path=Path(project_dir).parent)
    emit(Phase("environment", f"building the wheelhouse of {app} for {target.key}"))
    artifacts = await ArtifactBuilder(env, cache_dir or paths.cache_dir(), find_links=find_links).build(target)
    key = _env_key(artifacts, target)
    name = f"agi-env-{key[:16]}"
    if await client.run_on_scheduler(env_remote.has_plugin, name=name):
        return ShipReport(key, False, time.perf_counter() - start)
    files = {wheel: (artifacts.wheelhouse / wheel).read_bytes() for wheel in artifacts.files}
    size = sum(len(data) for data in files.values())
    emit(Phase("environment", f"shipping {len(files)} wheels ({size / 1e6:.1f} MB) to the scheduler and workers"))
    args = (name, root, key, files, artifacts.lock.read_text(), [artifacts.agi_wheel, artifacts.app_wheel])
    try:
        await client.register_plugin(env_remote.SchedulerEnvironmentPlugin(*args), name=name)
    except Exception as exc:  # noqa: BLE001 - the scheduler's error, named
        raise AgiError(f"installing the app's environment on the Gateway's scheduler failed: {type(exc).__name__}: {exc}",
                       fix="see the cause above (the image needs uv and write access to [cluster.gateway] env_root)") from None
    from distributed.protocol.pickle import dumps

    answers = await client.scheduler.register_worker_plugin(plugin=dumps(env_remote.EnvironmentPlugin(*args)), name=name,
                                                            idempotent=False)
    failed = {names.get(address, address): answer for address, answer in answers.items() if answer.get("status") == "error"}
    if failed:
        shown = "; ".join(f"worker {worker}: {_error_text(answer)}" for worker, answer in sorted(failed.items())[:5])
        raise AgiError(f"installing the app's environment failed on {len(failed)} worker(s): {shown}",
                       fix="see the cause above (the image needs uv and write access to [cluster.gateway] env_root)")
    after, _ = await _facts(client, root, key)
    processes = {who: "present" if isinstance(fact, dict) and fact.get("present") else "missing" for who, fact in after.items()}
    return ShipReport(key, True, time.perf_counter() - start, size, processes)


def _error_text(answer: dict[str, Any]) -> str:
    """The exception a worker plugin's setup raised, as text (it arrives pickled)."""
    from distributed.core import clean_exception

    try:
        _, exc, _ = clean_exception(answer.get("exception"), answer.get("traceback"))
        return f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - the raw text is still better than nothing
        return str(answer.get("text") or answer.get("exception"))
