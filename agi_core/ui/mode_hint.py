"""The mode hint under the toggles: which mode the toggles make, in words, with the worker map
("mode 5 (pd): Dask, 3 worker processes on this machine, more threads in each (pool)")."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..base.hosts import is_local_host
from ..base.modes import Mode
from ..kernels.kinds import kind
from ..kernels.shape import ExecutionShape

__all__ = ["mode_hint"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"


def mode_hint(mode: Mode, workers: Mapping[str, int], rapids: object = False, cores: int | None = None,
              compiled: str = "cython") -> str:
    """``mode`` (from the toggles) in words; ``workers``: the worker map (host → count; empty: this
    machine, one per core); ``rapids``: the rapids setting (True, False or "require"); ``compiled``:
    the compiled kernels the cython bit runs. Said from the mode's `ExecutionShape`."""
    shape = ExecutionShape.of(mode, compiled=compiled, rapids=rapids if rapids == "require" else True)
    cores = cores or os.cpu_count() or 1
    hosts = {h: c for h, c in workers.items() if c > 0} or {"127.0.0.1": cores}
    local = all(is_local_host(h) for h in hosts)
    count = sum(hosts.values())
    where = "on this machine" if local else f"on {_plural(len(hosts), 'host')}"
    if shape.cluster:
        run = f"Dask, {_plural(count, 'worker process')} {where}"
        run += ", more threads in each (pool)" if shape.pooled else ", one partition at a time in each"
    elif shape.executor == "pool":
        local_slots = sum(c for h, c in hosts.items() if is_local_host(h)) or cores
        run = f"a pool of {_plural(local_slots, 'process')} on this machine, no Dask"
    else:
        run = "in the agi process itself, one partition after another (breakpoints work)"
    cpu = kind(shape.cpu_kernel)
    if shape.gpu != "off":
        kernels = ("GPU kernels, and every worker must have a GPU" if shape.gpu == "require"
                   else f"GPU kernels where a worker has a GPU, {cpu.title} kernels elsewhere")
    else:
        kernels = f"compiled {cpu.title} kernels" if cpu.build else f"{cpu.title} kernels"
    return f"mode {mode.value} ({mode.letters or '-'}): {run}; {kernels}"
