"""How the Slurm backend names things: its jobs in the queue, and the Dask workers that serve the plan's slots.

The jobs are named ``agi-<app>`` in the queue (and their output files after it). The Dask worker
of job ``j`` registers as ``slurm-<j>``, its slot's name, as on SSH clusters (a record whose
worker is not its slot shows a partition that ran elsewhere); with several processes per job they
are ``slurm-<j>-<k>``, and `slot_worker_names` maps the plan's slots to them.

>>> slot_worker_names(jobs=2, processes=1)
{'slurm-0': 'slurm-0', 'slurm-1': 'slurm-1'}
>>> slot_worker_names(jobs=1, processes=2)
{'slurm-0': 'slurm-0-0', 'slurm-1': 'slurm-0-1'}
"""

from __future__ import annotations

from ..base.hosts import slot_name
from .slurm_options import SLURM_HOST

__all__ = ["job_name", "job_worker_name", "slot_worker_names"]


def job_name(app: str) -> str:
    """The Slurm job name (``-J``) of an app's worker jobs, and of their output files."""
    return f"agi-{app}"


def job_worker_name(j: int) -> str:
    """The Dask worker name of job ``j`` (its workers' prefix with several processes per job)."""
    return slot_name(SLURM_HOST, j)


def slot_worker_names(*, jobs: int, processes: int) -> dict[str, str]:
    """Slot → the Dask worker name that serves it (see the module's docstring)."""
    names = {}
    for j in range(jobs):
        for k in range(processes):
            names[slot_name(SLURM_HOST, j * processes + k)] = job_worker_name(j) + (f"-{k}" if processes > 1 else "")
    return names
