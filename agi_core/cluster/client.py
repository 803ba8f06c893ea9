"""Connect a Dask client to a cluster and check it: every worker joined, versions match.

Dask's own version warning is silenced here, where the client connects, and only here: agi's
check (`versions.check_versions`) speaks instead, about the differences that matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, ignore
from .backend import ClusterBackend
from .joining import wait_for_min_workers
from .spec import ClusterSpec
from .versions import check_versions

__all__ = ["config_yaml", "connect_client", "dask_config", "open_client"]


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


@contextlib.contextmanager
def _without_dask_version_warning() -> Iterator[None]:
    """Ignore the `VersionMismatchWarning` the scheduler sends a connecting client (it flags
    patch-level Python differences too); nothing else is filtered, and only for this block."""
    from distributed.versions import VersionMismatchWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=VersionMismatchWarning)
        yield


async def open_client(address: str, *, security: Any = None, timeout: float = 10.0) -> Any:
    """An asynchronous `distributed.Client` connected to ``address`` (not the default client).
    Raises what `Client` raises when the scheduler cannot be reached (OSError, TimeoutError)."""
    from distributed import Client

    with _without_dask_version_warning():
        return await Client(address, asynchronous=True, timeout=timeout, security=security, set_as_default=False)


async def connect_client(backend: ClusterBackend, spec: ClusterSpec, *, wait: bool = True, emit: EventSink = ignore) -> Any:
    """A connected client, once ``spec.min_workers`` of its workers joined (`joining`; ``emit``
    hears joined/expected) and versions match.

    Raises `AgiError` naming the scheduler it cannot reach, the workers that never joined (with
    the backend's report on them), or the hosts whose versions differ.
    """
    try:
        client = await open_client(backend.address, security=backend.security(), timeout=spec.dask.connect_timeout)
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
        raise AgiError(f"cannot reach the Dask scheduler at {backend.address}: {exc}",
                       fix="check that it runs (agi cluster status APP) and that its port is open") from None
    try:
        if wait:
            await wait_for_min_workers(client, backend, spec, emit)
        await check_versions(client, app=spec.app, app_distribution=spec.app_distribution, app_version=spec.app_version)
    except BaseException:
        await client.close()
        raise
    return client
