"""``[cluster.slurm]``: the options of the Slurm backend (`SlurmCluster.Options`), pydantic only.

Kept apart from `slurm` so that reading settings never imports the backend's machinery; the
settings check this table with the rest (`ClusterSettings`), naming the file and the key.
"""

from __future__ import annotations

import re

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..base.hosts import HostAddress
from ..settings.schema import WorkerSpec

__all__ = ["SLURM_HOST", "SlurmSettings", "walltime_seconds"]

#: The worker-map key of the slots of Slurm jobs: ``slurm-0``, ``slurm-1``, ... (Slurm picks the nodes).
SLURM_HOST = "slurm"

_MEMORY = re.compile(r"\d+(\.\d+)?\s*([KMGTP]i?B?|B)?", re.IGNORECASE)
_WALLTIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}")


def walltime_seconds(walltime: str) -> int:
    """Slurm's time formats in seconds: MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS,
    DAYS-HOURS, DAYS-HOURS:MINUTES, DAYS-HOURS:MINUTES:SECONDS.

    >>> walltime_seconds("90"), walltime_seconds("01:30"), walltime_seconds("01:00:00"), walltime_seconds("1-2")
    (5400, 90, 3600, 93600)
    """
    days, _, rest = walltime.strip().rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        seconds = (parts + [0, 0])[:3]  # hours, then minutes and seconds when given
        return int(days) * 86400 + seconds[0] * 3600 + seconds[1] * 60 + seconds[2]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


class SlurmSettings(BaseModel):
    """``[cluster.slurm]``: Dask workers as Slurm batch jobs (``[cluster] backend = "slurm"``, docs/slurm.md).

    Each job runs ``processes`` Dask workers, one slot each: the plan has ``jobs * processes``
    slots, ``slurm-0`` … (`worker_map`).

    >>> SlurmSettings(jobs=2, processes=2).worker_map()["slurm"].count
    4
    >>> SlurmSettings.model_validate({"queue": "gpu", "memory": "4GB"}).partition
    'gpu'
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)

    partition: str | None = Field(default=None, validation_alias=AliasChoices("partition", "queue"),
                                  description="the Slurm partition (queue) of the jobs (-p); None: the cluster's default")
    account: str | None = Field(default=None, description="the account the jobs are charged to (-A)")
    jobs: int = Field(default=1, ge=1, description="worker jobs submitted")
    processes: int = Field(default=1, ge=1, description="Dask worker processes per job (one slot each)")
    cores: int = Field(default=1, ge=1, description="CPU cores per job (--cpus-per-task); with the pool bit its "
                       "workers share them as threads")
    memory: str = Field(default="2GB", description='memory per job (--mem), e.g. "4GB"; the workers share it')
    walltime: str = Field(default="01:00:00", description='the jobs\' time limit (-t), e.g. "02:00:00" or "1-00:00:00"')
    job_extra: list[str] = Field(default_factory=list, description='more #SBATCH lines, e.g. ["--qos=high", "--exclusive"]')
    python: str | None = Field(default=None, description="the workers' Python on the shared filesystem; None: the "
                               "venv `agi install` builds at [cluster.install] venv")
    interface: str | None = Field(default=None, description='network interface the scheduler and workers use, e.g. "ib0"; '
                                  "None: this machine's hostname for the scheduler, Dask's choice for workers")
    gpus: int = Field(default=0, ge=0, description="GPUs per job: with the rapids bit, --gres=gpu:N and a GPU "
                      "Dask resource for each of its workers")
    login: str | None = Field(default=None, description="[USER@]HOST of the login node `agi install` builds the "
                              "environment from, over SSH; None: this machine (the manager runs on the cluster)")
    log_directory: str | None = Field(default=None, description="the jobs' output files (shared filesystem); None: "
                                      "<[cluster.install] root>/logs/<app>/slurm")
    pending_timeout: float = Field(default=600.0, gt=0, description="seconds a job may wait in the queue: at the start, "
                                   "the run fails naming Slurm's reason when too few jobs run for [cluster] min_workers; "
                                   "later, a job pending longer is cancelled (a warning names the reason)")
    max_jobs: int | None = Field(default=None, ge=1, description="worker jobs one run may submit in all: the first `jobs` "
                                 "and the replacements of jobs that ended (cancelled, preempted, failed, walltime) while "
                                 "work remained; None: 10 x jobs")
    walltime_margin: float = Field(default=120.0, ge=0, description="seconds before the walltime at which each worker "
                                   "retires (Dask's --lifetime): it hands its partitions back and a replacement job is "
                                   "submitted while work remains")
    walltime_stagger: float = Field(default=60.0, ge=0, description="each worker retires up to twice this many seconds "
                                    "earlier, at random (Dask's --lifetime-stagger), so that jobs started together do not "
                                    "all leave at once")
    walltime_drain: float = Field(default=60.0, ge=0, description="seconds before a worker retires at which the run "
                                  "stops giving it new partitions (its queued ones go to the others, its running ones "
                                  "finish) and submits its job's replacement, so that nothing runs twice and the new "
                                  "workers join before the old ones leave")

    @field_validator("memory")
    @classmethod
    def _memory_is_a_size(cls, value: str) -> str:
        if not _MEMORY.fullmatch(value.strip()):
            raise ValueError(f"invalid memory {value!r}: expected a size such as '4GB', '512MB' or '2GiB'")
        return value.strip()

    @field_validator("walltime")
    @classmethod
    def _walltime_is_slurm_time(cls, value: str) -> str:
        if not _WALLTIME.fullmatch(value.strip()):
            raise ValueError(f"invalid walltime {value!r}: expected Slurm's MINUTES, HH:MM:SS or DAYS-HH:MM:SS")
        return value.strip()

    @field_validator("job_extra")
    @classmethod
    def _directives(cls, lines: list[str]) -> list[str]:
        directives = [line.strip().removeprefix("#SBATCH").strip() for line in lines]
        bad = [line for line in directives if not line.startswith("-")]
        if bad:
            raise ValueError(f"invalid #SBATCH option(s) {bad}: expected sbatch options such as '--qos=high'")
        return directives

    @field_validator("login")
    @classmethod
    def _login_is_a_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        HostAddress.parse(value)  # a HostAddressError (a ValueError) names the accepted forms
        return value.strip()

    @model_validator(mode="after")
    def _one_gpu_per_worker(self) -> SlurmSettings:
        # each Dask worker of a job runs its kernels on one GPU (`slurm_gpu`): fewer GPUs than
        # workers would share one, more would sit idle
        if self.gpus and self.gpus != self.processes:
            raise ValueError(f"gpus = {self.gpus} with processes = {self.processes}: each worker of a job uses one GPU, so "
                             + (f"{self.processes} workers would share {self.gpus} GPU{'s' if self.gpus > 1 else ''}" if self.gpus < self.processes
                                else f"{self.gpus - self.processes} GPU{'s' if self.gpus - self.processes > 1 else ''} per job would sit idle")
                             + f"; set processes = gpus (one worker per GPU), e.g. processes = {self.gpus}")
        return self

    @model_validator(mode="after")
    def _time_to_work(self) -> SlurmSettings:
        if self.lifetime() - self.walltime_stagger - self.walltime_drain <= 0:
            raise ValueError(f"walltime = {self.walltime!r} ({walltime_seconds(self.walltime)} s) leaves a worker no time: it "
                             f"retires walltime_margin ({self.walltime_margin:g} s) + up to 2 x walltime_stagger "
                             f"({self.walltime_stagger:g} s) before it, and takes no new work walltime_drain "
                             f"({self.walltime_drain:g} s) before that; raise walltime or lower those three")
        return self

    @model_validator(mode="after")
    def _max_jobs_covers_jobs(self) -> SlurmSettings:
        if self.max_jobs is not None and self.max_jobs < self.jobs:
            raise ValueError(f"max_jobs = {self.max_jobs} is below jobs = {self.jobs}: max_jobs counts every job a run submits, "
                             f"the first {self.jobs} included; set max_jobs >= jobs (or leave it unset: 10 x jobs)")
        return self

    def lifetime(self) -> float:
        """Seconds a worker runs before it retires (Dask's ``--lifetime``; ``--lifetime-stagger``
        moves it by up to `walltime_stagger` either way): always `walltime_margin` before the walltime."""
        return walltime_seconds(self.walltime) - self.walltime_margin - self.walltime_stagger

    def job_limit(self) -> int:
        """`max_jobs`, or its default: 10 x `jobs`."""
        return self.max_jobs if self.max_jobs is not None else 10 * self.jobs

    def worker_map(self) -> dict[str, WorkerSpec]:
        """The slots of the jobs, as a worker map: `SLURM_HOST` with ``jobs * processes`` workers
        (which offer a GPU when the jobs ask for some)."""
        # no device pinned here: each job's workers split the GPUs Slurm gave the job (`slurm_gpu`)
        return {SLURM_HOST: WorkerSpec(count=self.jobs * self.processes, capabilities=("gpu",) if self.gpus else (),
                                       share_gpus=bool(self.gpus))}
