"""What agi asks the Slurm backend's class before any cluster exists: its worker map, threads, GPUs, install hosts, ports, identity.

`SlurmCluster` takes these class methods from `SlurmAnswers` (a mixin): the settings, `agi
install`, `agi cluster ports` and the warm-cluster check ask them, given ``[cluster.slurm]``
(`SlurmSettings`), without a cluster or dask-jobqueue (`ClusterBackend` documents each question).
"""

from __future__ import annotations

from typing import Any

from ..base.hosts import LOCAL_HOST
from ..kernels.shape import ExecutionShape
from .slurm_options import SlurmSettings

__all__ = ["SlurmAnswers"]


class SlurmAnswers:
    """The class methods of `SlurmCluster` that answer for its settings (see the module's docstring)."""

    @classmethod
    def default_min_workers(cls, options: Any, expected: int) -> int:
        """One job's workers: the queue starts jobs when it can, and the run starts with the first."""
        return max(1, min(options.processes, expected))

    @classmethod
    def implied_worker_map(cls, cluster: Any, options: SlurmSettings) -> dict[str, Any]:
        """The slots of the jobs (`SlurmSettings.worker_map`): Slurm picks their nodes."""
        return options.worker_map()

    @classmethod
    def threads(cls, options: SlurmSettings, shape: ExecutionShape, *, local: bool, workers_on_host: int, local_threads: int | None) -> int:
        """With the pool bit, a job's cores shared among its worker processes; else 1."""
        return max(1, options.cores // options.processes) if shape.pooled else 1

    @classmethod
    def owns_gpu(cls, options: SlurmSettings, shape: ExecutionShape, gpu: Any) -> bool:
        """A job asks for ``--gres`` only with the rapids bit: its workers own a GPU only then."""
        return gpu is not None and shape.gpu != "off"

    @classmethod
    def install_hosts(cls, cluster: Any, options: SlurmSettings) -> dict[str, list[str]]:
        """One host: the login node (``[cluster.slurm] login``, else this machine), which builds
        the venv once on the shared filesystem that every compute node sees (``[cluster.install]
        root``); the scheduler runs in the manager's own Python."""
        return {options.login or LOCAL_HOST: [f"Slurm workers: {options.jobs * options.processes} (shared venv)"]}

    @classmethod
    def port_rules(cls, cluster: Any, options: SlurmSettings) -> list[Any]:
        from .slurm_ports import slurm_port_rules

        return slurm_port_rules(cluster, options)

    @classmethod
    def identity(cls, options: SlurmSettings) -> dict[str, Any]:
        """The jobs' resources: a warm cluster of 1 GB jobs does not fit 8 GB ones (where to
        install from, how long to wait in the queue and when a run stops giving a worker work change
        nothing that runs)."""
        return options.model_dump(mode="json", exclude={"login", "pending_timeout", "walltime_drain"})
