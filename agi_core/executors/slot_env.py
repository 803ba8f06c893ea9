"""The environment of a pool slot's process under the rapids bit: its own GPU, as a cluster worker gets.

A slot the plan gives a GPU owns one device of this machine (`gpus.gpu_workers` on the local
worker map, as for a cluster's workers: ``CUDA_VISIBLE_DEVICES`` of its own); the other slots get
an empty ``CUDA_VISIBLE_DEVICES`` and `gpus.GPU_SLOT` = 0, so they run the CPU kernels the plan
expects of them. The process applies it before it loads anything (`slot_main_in_env`); it is
started with spawn, never forked: CUDA does not run in a child forked after ``cuInit``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..base.hosts import slot_name
from ..gpus import GPU, WorkerGpu, gpu_workers, worker_env
from .slot_process import slot_main

if TYPE_CHECKING:
    from ..gpus import Gpu
    from ..settings import WorkerSpec

__all__ = ["slot_envs", "slot_main_in_env"]


def slot_envs(workers: Mapping[str, WorkerSpec], capabilities: Mapping[str, Sequence[str]],
              gpus: Sequence[Gpu]) -> dict[str, dict[str, str]]:
    """Slot name → the environment its process gets, for this machine's worker map ``workers``,
    the plan's slots' ``capabilities`` and this machine's ``gpus`` (probed).

    >>> from agi_core.settings import WorkerSpec
    >>> from agi_core.gpus import Gpu
    >>> envs = slot_envs({"127.0.0.1": WorkerSpec(count=2)}, {"127.0.0.1-0": ["gpu"], "127.0.0.1-1": []},
    ...                  [Gpu(0, "H100", 81559, "GPU-aa")])
    >>> envs["127.0.0.1-0"]["CUDA_VISIBLE_DEVICES"], envs["127.0.0.1-1"]
    ('GPU-aa', {'CUDA_VISIBLE_DEVICES': '', 'AGI_GPU_SLOT': '0'})
    """
    envs = {}
    for host, spec in workers.items():
        for k, owner in enumerate(gpu_workers(spec, gpus, host)):
            name = slot_name(host, k)
            if name not in capabilities:
                continue
            offers = GPU in capabilities[name]
            gpu = (owner or WorkerGpu(None)) if offers else None  # a simulated GPU: no device to pin
            envs[name] = worker_env(spec, gpu, len(gpus))
    return envs


def slot_main_in_env(env: Mapping[str, str], *args: Any) -> None:
    """`slot_main`, in ``env`` (set before the app, numba or cuDF are imported)."""
    os.environ.update(env)
    slot_main(*args)
