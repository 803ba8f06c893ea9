"""`agi cluster up|status|down`: a warm cluster that outlives this process, reused by runs.

These functions take what the caller resolved (the app's name and its `ClusterSpec`, see
`spec.spec_for`) and decide nothing about modes or settings; they return typed results.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, ignore
from .backend import ProcessRecord
from .client import connect_client, dask_config, open_client
from .registry import backend_class
from .spec import ClusterSpec
from .tls import insecure_warning
from .warm import WarmClusters, attach, mismatch

__all__ = ["ClusterStatus", "WorkerStatus", "cluster_down", "cluster_status", "cluster_up"]


@dataclass(frozen=True)
class WorkerStatus:
    """A worker connected to the scheduler."""

    name: str
    address: str
    host: str
    nthreads: int


@dataclass(frozen=True)
class ClusterStatus:
    """Whether an app's warm cluster runs, where, and what it runs."""

    app: str
    running: bool
    address: str | None
    dashboard: str | None
    workers: tuple[WorkerStatus, ...]
    processes: tuple[ProcessRecord, ...]
    problem: str | None = None
    warnings: tuple[str, ...] = ()  # e.g. plain TCP (`tls.insecure_warning`)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _check_app(app: str, spec: ClusterSpec | None) -> None:
    if spec is not None and spec.app and spec.app != app:
        raise AgiError(f"the cluster spec is for '{spec.app}', not '{app}'", fix="build the spec for the same app")


async def cluster_up(app: str, spec: ClusterSpec, *, warm: WarmClusters | None = None, emit: EventSink = ignore) -> ClusterStatus:
    """Start ``spec``'s cluster as processes that outlive this one (its backend's `warm`), and
    record it, so the app's runs attach to it. Raises `AgiError` when one already runs. ``emit``
    receives each host's progress."""
    import dask
    import distributed  # noqa: F401 - registers its config defaults before we override some

    _check_app(app, spec)
    warm = warm or WarmClusters.default()
    state = warm.load(app)
    if state is not None:
        status = await cluster_status(app, spec, warm=warm)
        if status.running:
            reason = mismatch(state, spec)
            raise AgiError(f"a warm cluster of '{app}' already runs at {state.get('address')}"
                           + (f", with other settings ({reason})" if reason else ""),
                           fix=f"use it, or stop it first: agi cluster down {app}")
        await cluster_down(app, spec, warm=warm)  # leftovers of a dead one
    if spec.embedded:  # a warm cluster needs a known port: the settings' one
        spec = spec.with_ports(spec.dask.scheduler_port, spec.dask.dashboard_port)
    # a warm cluster is brought up whole: every worker, not the [cluster] min_workers a run starts with
    spec = dataclasses.replace(spec, min_workers=0)
    backend = backend_class(spec.backend).warm(spec)
    with dask.config.set(dask_config(spec)):
        await backend.start(emit)
        try:
            client = await connect_client(backend, spec)
            await client.close()
        except BaseException:
            await backend.close()
            raise
    warm.save(app, spec, backend)
    return await cluster_status(app, spec, warm=warm)


async def cluster_status(app: str, spec: ClusterSpec | None = None, *, warm: WarmClusters | None = None) -> ClusterStatus:
    """Whether the app's warm cluster runs, and its workers.

    The state file records the spec the cluster was started with; ``spec`` is used only for
    state files that lack it.
    """
    _check_app(app, spec)
    warm = warm or WarmClusters.default()
    state = warm.load(app)
    if state is None:
        warning = insecure_warning(spec.tls) if spec is not None else None
        return ClusterStatus(app, False, None, None, (), (), "no warm cluster (start one with `agi cluster up`)",
                             (warning,) if warning else ())
    backend = attach(state, spec if "spec" not in state else None)
    warning = insecure_warning(backend.spec.tls)  # the running cluster's, whatever the settings say now
    warnings = (warning,) if warning else ()
    address, dashboard, processes = state["address"], state.get("dashboard"), backend.started()
    try:
        client = await open_client(address, security=backend.security(), timeout=5)
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
        return ClusterStatus(app, False, address, dashboard, (), processes,
                             f"scheduler unreachable ({exc}); `agi cluster down {app}` cleans up", warnings)
    try:
        identity = await client.scheduler.identity(n_workers=-1)
    finally:
        await client.close()
    workers = sorted((WorkerStatus(str(w.get("name")), worker_address, str(w.get("host")), int(w.get("nthreads") or 0))
                      for worker_address, w in identity["workers"].items()), key=lambda w: w.name)
    return ClusterStatus(app, True, address, dashboard, tuple(workers), processes, warnings=warnings)


async def cluster_down(app: str, spec: ClusterSpec | None = None, *, warm: WarmClusters | None = None) -> int:
    """Stop every process of the app's warm cluster (its backend's `close`) and forget it;
    returns how many processes it stopped (0: there was no warm cluster).

    Like `cluster_status`, it reaches the hosts with the spec the cluster was started with.
    """
    _check_app(app, spec)
    warm = warm or WarmClusters.default()
    state = warm.stopping(app)  # no run adds a job after this (`WarmClusters.stopping`)
    if state is None:
        return 0
    backend = attach(state, spec if "spec" not in state else None)
    count = len(backend.started())
    await backend.close()
    warm.forget(app)
    return count
