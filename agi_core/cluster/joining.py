"""How many workers a run waits for before it starts, and how long (``[cluster] min_workers``,
``join_timeout``).

On a real cluster the workers are not all there when a run starts: a batch job waits in the
queue, a host is down. A run starts as soon as ``min_workers`` of the expected workers joined;
the others are awaited in the background until ``join_timeout`` and take work when they come
(`executors.elastic`). Only when ``min_workers`` cannot be met in time is it an error, naming the
workers missing and the backend's report on them.

>>> resolve_min_workers(None, 8, backend_default=1), resolve_min_workers(0.5, 5, backend_default=5)
(1, 3)
>>> resolve_min_workers("all", 4, backend_default=1), resolve_min_workers(9, 4, backend_default=1)
(4, 4)
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Any

from ..base.errors import AgiError
from ..base.events import EventSink, WorkersJoining, ignore

if TYPE_CHECKING:  # annotations only: `spec` asks this module for `resolve_min_workers`
    from .backend import ClusterBackend
    from .spec import ClusterSpec

__all__ = ["joined_names", "resolve_min_workers", "wait_for_min_workers"]

#: how often the scheduler is asked who joined while a cluster starts
_POLL_S = 0.2


def resolve_min_workers(setting: int | float | str | None, expected: int, *, backend_default: int) -> int:
    """The count of ``min_workers``: a count (at most ``expected``), a fraction of ``expected``
    rounded up, ``"all"``, or the backend's default when not set; at least 1."""
    if setting is None:
        count = backend_default
    elif setting == "all":
        count = expected
    elif isinstance(setting, float):
        count = math.ceil(setting * expected - 1e-9)
    else:
        count = int(setting)
    return max(1, min(count, expected))


async def joined_names(client: Any) -> dict[str, str]:
    """Dask worker name → address of the workers the scheduler has now."""
    identity = await client.scheduler.identity(n_workers=-1)
    return {str(w.get("name")): address for address, w in identity["workers"].items()}


async def wait_for_min_workers(client: Any, backend: ClusterBackend, spec: ClusterSpec, emit: EventSink = ignore) -> None:
    """Return once ``spec.min_workers`` of the backend's workers joined (all of them when they come
    first), saying joined/expected as it changes (`WorkersJoining`). Past ``spec.join_timeout``
    with fewer, raise `AgiError` naming the missing workers, their hosts and the backend's report."""
    expected = set(backend.worker_names().values())
    needed = min(spec.min_workers or len(expected), len(expected))
    deadline = time.monotonic() + spec.join_wait
    said = -1
    while True:
        joined = set(await joined_names(client)) & expected
        if len(joined) != said:
            said = len(joined)
            emit(WorkersJoining(joined=said, expected=len(expected), needed=needed))
        if len(joined) >= len(expected) or len(joined) >= needed:
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(_POLL_S)
    names = backend.worker_names()
    missing = sorted(expected - joined)
    hosts = sorted({w.host for w in spec.workers if names.get(w.slot) in missing})
    logs = await backend.missing_workers_report(joined)
    short = f" ({len(joined)} joined, min_workers = {needed})" if needed < len(expected) else ""
    raise AgiError(f"{len(missing)} worker(s) did not join within {spec.join_wait:g} s{short}, on host(s) {', '.join(hosts)}: "
                   f"{', '.join(missing)}" + (f"\n{logs}" if logs else ""),
                   fix="check those hosts with `agi doctor APP` (venv installed? scheduler reachable from them?)"
                       + ("; or lower [cluster] min_workers to start with fewer" if needed > 1 else ""))
