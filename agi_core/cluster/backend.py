"""The small interface every way of getting a Dask cluster implements (start, close, address).

Backends: `InProcessCluster` (scheduler in this process, one Nanny-managed worker process per slot:
the fast embedded default), `LaunchedCluster` (detached scheduler and worker processes on hosts,
started over SSH or locally; survives this process as a warm cluster). Any other Dask cluster
(dask-jobqueue, dask-kubernetes, an existing scheduler) plugs in by implementing this interface.
"""

from __future__ import annotations

import abc
from typing import Any

__all__ = ["ClusterBackend"]


class ClusterBackend(abc.ABC):
    """A running Dask cluster: ``await backend.start()``, use ``backend.address``, ``await backend.close()``."""

    #: the scheduler's address, e.g. ``tcp://10.0.0.1:8786`` (set by `start`)
    address: str = ""
    #: the dashboard's URL, or None
    dashboard: str | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the scheduler and every worker, and wait until all workers have joined."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop everything this backend started (idempotent; also after errors)."""

    def security(self) -> Any:
        """The `distributed.Security` a client needs (None for plain TCP)."""
        return None

    async def __aenter__(self) -> ClusterBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
