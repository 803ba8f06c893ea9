"""Worker slots: `Slot` (one worker's share of a host, with its capacity and capabilities) and the slots
a worker map and an execution shape give (`slots_for`, `slots_for_mode`), which `balance` fills.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..base.hosts import slot_name
from ..base.modes import Mode
from ..gpus import GPU, gpu_workers
from ..kernels.shape import ExecutionShape

if TYPE_CHECKING:
    from ..gpus import Gpu
    from ..settings import ClusterSettings, WorkerSpec

__all__ = ["Slot", "slots_for", "slots_for_mode"]


@dataclass(frozen=True, slots=True)
class Slot:
    """One worker process: ``<host>-<k>``, its relative speed and capabilities."""

    name: str
    host: str
    capacity: float = 1.0
    capabilities: tuple[str, ...] = field(default=())


def slots_for(workers: Mapping[str, WorkerSpec], gpus: Mapping[str, Sequence[Gpu]] | None = None) -> list[Slot]:
    """One slot per worker process of the worker map, named by `slot_name`: ``<host>-<k>``.

    A slot whose worker owns a GPU (`gpus.gpu_workers`: declared, or among the host's ``gpus``
    as probed) offers ``"gpu"``.

    >>> from agi_core.settings import WorkerSpec
    >>> from agi_core.gpus import Gpu
    >>> [(s.name, s.capabilities) for s in slots_for({"h": WorkerSpec(count=2)}, {"h": [Gpu(0, "T4", 15360)]})]
    [('h-0', ('gpu',)), ('h-1', ())]
    """
    slots = []
    for host, spec in workers.items():
        owners = gpu_workers(spec, (gpus or {}).get(host, ()), host)
        plain = tuple(spec.capabilities)
        with_gpu = plain if GPU in plain else (*plain, GPU)
        slots += [Slot(slot_name(host, k), host, spec.capacity, with_gpu if owners[k] else plain) for k in range(spec.count)]
    return slots


def slots_for_mode(cluster: ClusterSettings, shape: ExecutionShape | Mode, *, local_capabilities: tuple[str, ...] = (),
                   gpus: Mapping[str, Sequence[Gpu]] | None = None) -> list[Slot]:
    """The slots a run of ``shape`` has (a `Mode`: its shape, `ExecutionShape.of`).

    The cluster bit: every worker of the worker map (`ClusterSettings.worker_map`). Otherwise
    this machine's entries of it (`ClusterSettings.local_worker_map`): all their slots with the
    pool bit, the first one without it. The names are the cluster's on this machine, so a plan
    written for ``--mode p`` runs unchanged under ``--mode dp``. ``gpus``: each host's GPUs
    (`gpus.gpus_of`), for the cluster's slots (this machine's, for its slots).
    """
    if not isinstance(shape, ExecutionShape):
        shape = ExecutionShape.of(shape)
    if shape.cluster:
        return slots_for(cluster.worker_map(), gpus)
    slots = [Slot(s.name, s.host, s.capacity, tuple(dict.fromkeys(s.capabilities + local_capabilities)))
             for s in slots_for(cluster.local_worker_map(), gpus)]
    return slots if shape.pooled else slots[:1]
