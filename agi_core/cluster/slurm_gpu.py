"""Slurm GPU jobs: each Dask worker of a job takes its own GPU among those Slurm gave the job.

Slurm gives a job ``--gres=gpu:N`` as one ``CUDA_VISIBLE_DEVICES`` list (indices, or ``GPU-``/
``MIG-`` UUIDs), which every worker process of the job inherits: without this, all of them would
run on the list's first GPU. Each worker process loads this module (``dask worker --preload``)
before it runs anything, so before any CUDA call, and rotates the list so that its own GPU comes
first (`gpus.bind_in_job`). Worker k of a job is named ``slurm-<j>-<k>`` (``slurm-<j>`` alone).
Where Slurm sets no ``CUDA_VISIBLE_DEVICES`` (no device cgroup, some gres setups), the job's GPUs
are ``SLURM_JOB_GPUS`` (the node's indices), else the first ``SLURM_GPUS_ON_NODE``.

>>> worker_index("slurm-3-1"), worker_index("slurm-3")
(1, 0)
>>> job_gpus({"SLURM_JOB_GPUS": "2,3"}), job_gpus({"SLURM_GPUS_ON_NODE": "2"}), job_gpus({})
('2,3', '0,1', None)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..gpus import bind_in_job

__all__ = ["PRELOAD", "dask_setup", "job_gpus", "worker_index"]

#: what ``dask worker --preload`` is given
PRELOAD = __name__


def worker_index(name: str) -> int:
    """Which worker of its job a Dask worker named ``slurm-<j>[-<k>]`` is: ``k`` (0 alone)."""
    parts = name.split("-")
    return int(parts[-1]) if len(parts) >= 3 and parts[-1].isdigit() else 0


def job_gpus(environ: Mapping[str, str]) -> str | None:
    """The GPUs Slurm gave the job, as a ``CUDA_VISIBLE_DEVICES`` list; None when it says nothing."""
    if environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return environ["CUDA_VISIBLE_DEVICES"]
    if environ.get("SLURM_JOB_GPUS"):
        return environ["SLURM_JOB_GPUS"]
    count = environ.get("SLURM_GPUS_ON_NODE", "")
    return ",".join(str(k) for k in range(int(count))) if count.isdigit() and int(count) > 0 else None


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in the worker process as it starts."""
    bound = bind_in_job(job_gpus(os.environ), worker_index(str(worker.name)))
    if bound is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = bound
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
