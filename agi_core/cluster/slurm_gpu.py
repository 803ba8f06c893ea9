"""Slurm GPU jobs: each Dask worker of a job takes its own GPU among those Slurm gave the job.

Slurm gives a job ``--gres=gpu:N`` as one ``CUDA_VISIBLE_DEVICES`` list (indices, or ``GPU-``/
``MIG-`` UUIDs), which every worker process of the job inherits: without this, all of them would
run on the list's first GPU. Each worker process loads this module (``dask worker --preload``)
before it runs anything, so before any CUDA call, and rotates the list so that its own GPU comes
first (`gpus.bind_in_job`). Worker k of a job is named ``slurm-<j>-<k>`` (``slurm-<j>`` alone).

>>> worker_index("slurm-3-1"), worker_index("slurm-3")
(1, 0)
"""

from __future__ import annotations

import os
from typing import Any

from ..gpus import bind_in_job

__all__ = ["PRELOAD", "dask_setup", "worker_index"]

#: what ``dask worker --preload`` is given
PRELOAD = __name__


def worker_index(name: str) -> int:
    """Which worker of its job a Dask worker named ``slurm-<j>[-<k>]`` is: ``k`` (0 alone)."""
    parts = name.split("-")
    return int(parts[-1]) if len(parts) >= 3 and parts[-1].isdigit() else 0


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in the worker process as it starts."""
    bound = bind_in_job(os.environ.get("CUDA_VISIBLE_DEVICES"), worker_index(str(worker.name)))
    if bound is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = bound
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
