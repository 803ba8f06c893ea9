"""Connect a Dask client to a cluster and check it: every worker joined, versions match."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import AgiError
from .backend import ClusterBackend
from .spec import ClusterSpec

__all__ = ["config_yaml", "connect_client", "dask_config"]


def dask_config(spec: ClusterSpec) -> dict[str, Any]:
    """Dask settings for the manager and every process agi starts: timeouts (they decide how fast a
    cut link is noticed), no work stealing (the plan decides placement), the workers' profiler
    (off by default: it costs NumPy kernels about 30%), and the worker processes' malloc trimming
    (None unsets Dask's default)."""
    trim = spec.dask.malloc_trim_threshold
    return {
        "distributed.comm.timeouts.connect": f"{spec.dask.connect_timeout:g}s",
        "distributed.comm.timeouts.tcp": f"{spec.dask.tcp_timeout:g}s",
        "distributed.scheduler.allowed-failures": 3,
        # Partitions run where the work plan puts them; Dask moves them only off a lost worker.
        "distributed.scheduler.work-stealing": False,
        "distributed.worker.profile.enabled": spec.dask.profile,
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None if trim is None else str(trim),
    }


def config_yaml(spec: ClusterSpec) -> str:
    """`dask_config` as a YAML file for processes started on hosts (``DASK_CONFIG`` points at it)."""
    import yaml

    nested: dict[str, Any] = {}
    for dotted, value in dask_config(spec).items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return yaml.safe_dump(nested)


async def connect_client(backend: ClusterBackend, spec: ClusterSpec, *, wait: bool = True) -> Any:
    """A connected asynchronous `distributed.Client`; raises `AgiError` naming workers that never joined."""
    from distributed import Client

    try:
        client = await Client(backend.address, asynchronous=True, timeout=spec.dask.connect_timeout,
                              security=backend.security(), set_as_default=False)
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
        raise AgiError(f"cannot reach the Dask scheduler at {backend.address}: {exc}",
                       fix="check that it runs (agi cluster status APP) and that its port is open") from None
    try:
        if wait:
            await _wait_for_workers(client, backend, spec)
        await _check_versions(client)
    except BaseException:
        await client.close()
        raise
    return client


async def _wait_for_workers(client: Any, backend: ClusterBackend, spec: ClusterSpec) -> None:
    expected = {w.name for w in spec.workers}
    try:
        await client.wait_for_workers(len(expected), timeout=spec.dask.start_timeout)
        return
    except (asyncio.TimeoutError, TimeoutError):
        pass
    joined = {str(w.get("name")) for w in (await client.scheduler.identity(n_workers=-1))["workers"].values()}
    missing = sorted(expected - joined)
    hosts = sorted({w.host for w in spec.workers if w.name in missing})
    report = getattr(backend, "missing_workers_report", None)
    logs = await report(joined) if report else ""
    raise AgiError(f"{len(missing)} worker(s) did not join within {spec.dask.start_timeout:g} s, on host(s) {', '.join(hosts)}: "
                   f"{', '.join(missing)}" + (f"\n{logs}" if logs else ""),
                   fix="check those hosts with `agi doctor APP` (venv installed? scheduler reachable from them?)")


async def _check_versions(client: Any) -> None:
    try:
        await client.get_versions(check=True)
    except ValueError as exc:
        raise AgiError(f"package versions differ between the manager, the scheduler and the workers:\n{exc}",
                       fix="re-install the workers with `agi install APP` from this manager") from None
