"""`agi cluster up|status|down`: a warm cluster that outlives this process, reused by runs."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..env import AgiEnv
from ..errors import AgiError
from ..modes import Mode
from .client import connect_client, dask_config
from .launched import LaunchedCluster
from .spec import cluster_spec
from .warm import WarmClusters, mismatch

__all__ = ["ClusterStatus", "cluster_down", "cluster_status", "cluster_up"]


@dataclass
class ClusterStatus:
    app: str
    running: bool
    address: str | None
    dashboard: str | None
    workers: list[dict[str, Any]]
    processes: list[dict[str, Any]]
    problem: str | None = None


def _resolve(env: AgiEnv, mode: Mode | int | str | None, cluster: Mapping[str, Any] | None) -> tuple[Any, Any, Mode]:
    import os

    settings = env.settings(cluster=cluster)
    run_mode = (Mode.parse(mode) if mode is not None else settings.cluster.mode) | Mode.CLUSTER
    return settings, cluster_spec(settings.cluster, run_mode, local_threads=os.cpu_count()), run_mode


async def cluster_up(env: AgiEnv, *, mode: Mode | int | str | None = None, cluster: Mapping[str, Any] | None = None,
                     warm: WarmClusters | None = None) -> ClusterStatus:
    """Start the app's cluster as detached processes and record it, so runs attach to it."""
    import dask
    import distributed  # noqa: F401 - registers its config defaults

    warm = warm or WarmClusters.default()
    settings, spec, _ = _resolve(env, mode, cluster)
    state = warm.load(env.name)
    if state is not None:
        status = await cluster_status(env, mode=mode, cluster=cluster, warm=warm)
        if status.running:
            reason = mismatch(state, spec)
            raise AgiError(f"a warm cluster of '{env.name}' already runs at {state.get('address')}"
                           + (f", with other settings ({reason})" if reason else ""),
                           fix=f"use it, or stop it first: agi cluster down {env.name}")
        await cluster_down(env, mode=mode, cluster=cluster, warm=warm)  # leftovers of a dead one
    if spec.embedded:  # a warm cluster needs a known port: the settings' one
        spec = dataclasses.replace(spec, scheduler_port=settings.cluster.dask.scheduler_port,
                                   dashboard_port=settings.cluster.dask.dashboard_port)
    launched = LaunchedCluster(spec, settings.cluster, env.name)
    with dask.config.set(dask_config(spec)):
        await launched.start()
        try:
            client = await connect_client(launched, spec)
            await client.close()
        except BaseException:
            await launched.close()
            raise
    warm.save(env.name, spec, launched)
    return await cluster_status(env, mode=mode, cluster=cluster, warm=warm)


async def cluster_status(env: AgiEnv, *, mode: Mode | int | str | None = None, cluster: Mapping[str, Any] | None = None,
                         warm: WarmClusters | None = None) -> ClusterStatus:
    """Whether the app's warm cluster runs, and its workers."""
    from distributed import Client

    warm = warm or WarmClusters.default()
    state = warm.load(env.name)
    if state is None:
        return ClusterStatus(env.name, False, None, None, [], [], "no warm cluster (start one with `agi cluster up`)")
    security = None
    if state.get("identity", {}).get("tls"):
        from .tls import ensure_tls_files, security_for

        settings, spec, _ = _resolve(env, mode, cluster)
        security = security_for(ensure_tls_files([spec.scheduler_host.rpartition("@")[2].split(":")[0], *(w.address for w in spec.workers)]))
    try:
        client = await Client(state["address"], asynchronous=True, timeout=5, set_as_default=False, security=security)
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
        return ClusterStatus(env.name, False, state["address"], state.get("dashboard"), [], state.get("processes", []),
                             f"scheduler unreachable ({exc}); `agi cluster down {env.name}` cleans up")
    try:
        identity = await client.scheduler.identity(n_workers=-1)
        workers = [{"name": w.get("name"), "address": address, "host": w.get("host"), "nthreads": w.get("nthreads")}
                   for address, w in identity["workers"].items()]
    finally:
        await client.close()
    return ClusterStatus(env.name, True, state["address"], state.get("dashboard"), sorted(workers, key=lambda w: str(w["name"])),
                         state.get("processes", []))


async def cluster_down(env: AgiEnv, *, mode: Mode | int | str | None = None, cluster: Mapping[str, Any] | None = None,
                       warm: WarmClusters | None = None) -> int:
    """Stop every process of the app's warm cluster (by process group, host by host); returns how many."""
    warm = warm or WarmClusters.default()
    state = warm.load(env.name)
    if state is None:
        return 0
    settings, spec, _ = _resolve(env, mode, cluster)
    launched = LaunchedCluster.from_state(state, spec, settings.cluster, env.name)
    count = len(launched.processes)
    await launched.close()
    warm.forget(env.name)
    return count
