"""`SlurmCluster` (backend ``slurm``): Dask workers as Slurm batch jobs, through dask-jobqueue.

Each of ``[cluster.slurm] jobs`` jobs runs ``processes`` Dask workers, one plan slot each
(``slurm-0`` …; `SlurmSettings.worker_map`, `slurm_names`), in the Python of the shared filesystem
(``[cluster.slurm] python``, or the venv `agi install` builds there). For a run, dask-jobqueue's
`SLURMCluster` runs the scheduler in this process and submits the jobs; a warm cluster (`agi
cluster up`) has a detached scheduler on this machine (`LaunchedCluster` without workers) and the
same jobs submitted as dask-jobqueue `SLURMJob`s, so both outlive this process and `agi cluster
down` stops them from their recorded state. Either way, `start` returns once every job runs (or
fails naming Slurm's reason after ``pending_timeout``), and `close` cancels the jobs and waits
until Slurm no longer lists them.

This module is the backend's life cycle; the rest is beside it: the names of jobs and workers
(`slurm_names`), the dask-jobqueue import (`slurm_jobqueue`), what a job runs and reads
(`slurm_jobs`), the class's answers before a cluster exists (`slurm_answers`), the options
(`slurm_options`), the queue commands (`slurm_queue`), the replacement of ended jobs
(`slurm_requeue`; a warm cluster's: `slurm_warm`), the port rules (`slurm_ports`) and a job's GPUs (`slurm_gpu`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, Notice, Phase, ignore
from ..base.hosts import LOCAL_HOST, HostAddress
from .backend import ClusterBackend, ProcessRecord
from .cache_key import publish_key
from .client import config_yaml
from .inprocess import dashboard_address, http_address
from .launched import LaunchedCluster
from .slurm_answers import SlurmAnswers
from .slurm_jobqueue import jobqueue, jobqueue_cluster, slurm_job
from .slurm_jobs import SlurmJobFiles, is_loopback
from .slurm_names import job_name, job_worker_name, slot_worker_names
from .slurm_options import SLURM_HOST, SlurmSettings
from .slurm_queue import cancel_jobs, check_slurm, job_states, submit_error, wait_gone, wait_until_running
from .slurm_requeue import JobKeeper
from .slurm_warm import NAME_MARK, WarmJobKeeper, WarmJobs, current_worker_names
from .spec import ClusterSpec

__all__ = ["SlurmCluster", "SlurmSettings", "slot_worker_names"]


class SlurmCluster(SlurmJobFiles, SlurmAnswers, ClusterBackend):
    """A scheduler on this machine and ``[cluster.slurm] jobs`` worker jobs submitted to Slurm."""

    Options = SlurmSettings
    job_id_env = "SLURM_JOB_ID"  # a worker in a Slurm job: the record names the job
    places_workers = True  # Slurm picks the nodes
    install_kind = "shared"  # one venv on the shared filesystem, built from the login node

    def __init__(self, spec: ClusterSpec, *, warm: bool = False) -> None:
        """``warm``: a cluster that outlives this process (detached scheduler, jobs left running)."""
        super().__init__(spec)
        if not spec.app:
            raise AgiError("a Slurm cluster needs the app's name (its jobs, logs and venv)", fix="build the spec with cluster_spec(..., app=NAME)")
        self.slurm: SlurmSettings = self.options
        self.warm_cluster = warm
        self.jobs: dict[str, str] = {}  # each job's Dask worker name (`job_worker_name`) → its Slurm job id
        self.nodes: dict[str, str] = {}  # job id → the node it runs on
        self._cluster: Any = None  # dask_jobqueue.SLURMCluster (a run's cluster)
        self._scheduler: LaunchedCluster | None = None  # the detached scheduler (a warm cluster)
        self.address = ""
        from .tls import cluster_id

        self._tls_id = cluster_id(spec.app, warm=warm)  # its credentials' folder (`tls_folder`)
        self._credentials: Any = None  # made by `start` (`tls.make_credentials`)
        self._security: Any = None
        self._keeper: JobKeeper | None = None  # replaces jobs that end while a run has work (`slurm_requeue`)
        self._replacements: list[Any] = []  # the SLURMJob objects of replacement jobs

    # -- life cycle -----------------------------------------------------------------------------

    async def launch(self, emit: EventSink = ignore) -> None:
        jobqueue()  # a missing extra is named before Slurm is asked anything
        await check_slurm(self.slurm.partition)
        self.log_directory.mkdir(parents=True, exist_ok=True)
        (self.log_directory / "dask.yaml").write_text(config_yaml(self.spec))
        publish_key(self.log_directory / "keys")  # the jobs' copy of the cache key (`cache_key`)
        if self.spec.tls:
            self._publish_tls()
        host = self._bind_host()
        names = [job_worker_name(j) for j in range(self.slurm.jobs)]
        if self.warm_cluster:
            await self._start_detached(host, names, emit)
        else:
            await self._start_jobqueue(host, emit)
        self._keeper = JobKeeper(self.jobs, limit=self.slurm.job_limit(), pending_timeout=self.slurm.pending_timeout)
        emit(Phase("cluster", f"{len(self.jobs)} Slurm job(s) queued: {', '.join(self.jobs.values())}; "
                              f"waiting up to {self.slurm.pending_timeout:g} s for them to run"))
        # the run starts with [cluster] min_workers' jobs (the rest join when they run: `joining`)
        need = -(-self.spec.min_workers // max(1, self.slurm.processes)) if self.spec.min_workers else None
        states = await wait_until_running(list(self.jobs.values()), self.slurm.pending_timeout, need=need)
        self.nodes = {job_id: state.node for job_id, state in states.items()}
        elsewhere = sorted({node for node in self.nodes.values() if node and node != socket.gethostname()})
        if elsewhere and is_loopback(host):
            # Debian maps the hostname to 127.0.1.1: the jobs then wait for a scheduler they cannot reach
            emit(Notice(f"the scheduler listens on {host}, a loopback address, but jobs run on {', '.join(elsewhere[:3])}: "
                        "they cannot reach it; set [cluster.slurm] interface (e.g. \"ib0\") or [cluster] scheduler", level="warning"))

    async def _start_jobqueue(self, host: str, emit: EventSink) -> None:
        spec = self.spec
        dashboard = dashboard_address(spec.dashboard_port, host)
        scheduler: dict[str, Any] = {"port": spec.scheduler_port, "dashboard": dashboard is not None,
                                     "dashboard_address": dashboard or http_address(host, 0)}
        if spec.embedded and self.slurm.interface:
            scheduler["interface"] = self.slurm.interface
        else:
            scheduler["host"] = host
        emit(Phase("cluster", f"starting a Dask scheduler here and submitting {self.slurm.jobs} Slurm job(s)"))
        self._cluster = jobqueue_cluster(asynchronous=True, name=job_name(spec.app), scheduler_options=scheduler,
                                        silence_logs=40, **self.job_options())
        await self._cluster  # the scheduler
        self.address = self._cluster.scheduler_address
        self.dashboard = self._cluster.dashboard_link if dashboard else None
        self._cluster.scale(jobs=self.slurm.jobs)
        try:
            await self._cluster  # submits the jobs (sbatch)
        except RuntimeError as exc:
            raise submit_error(exc) from None
        finally:
            self.jobs = {name: job.job_id for name, job in self._cluster.workers.items() if job.job_id}
        if len(self.jobs) < self.slurm.jobs:
            raise AgiError(f"only {len(self.jobs)} of {self.slurm.jobs} Slurm job(s) were submitted", fix="see `squeue` and sbatch's message")

    async def _start_detached(self, host: str, names: list[str], emit: EventSink) -> None:
        self._scheduler = LaunchedCluster(self._scheduler_spec(host), tethered=False, credentials=self._credentials)
        await self._scheduler.start(emit)
        self.address, self.dashboard = self._scheduler.address, self._scheduler.dashboard
        emit(Phase("cluster", f"submitting {len(names)} Slurm job(s)"))
        jobs = [slurm_job(scheduler=self.address, name=name, **self.job_options()) for name in names]
        results = await asyncio.gather(*(job.start() for job in jobs), return_exceptions=True)
        self.jobs = {job.name: job.job_id for job in jobs if job.job_id}
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            raise submit_error(failed[0]) if isinstance(failed[0], RuntimeError) else failed[0]

    def _scheduler_spec(self, host: str) -> ClusterSpec:
        """The spec of the detached scheduler: this machine at ``host``, no workers."""
        return dataclasses.replace(self.spec, workers=(), scheduler=HostAddress(host, port=self.spec.scheduler_port))

    async def tend(self, *, work_left: bool, emit: EventSink = ignore) -> None:
        """Replace jobs that ended while the run has work, cancel jobs pending too long (`slurm_requeue`)."""
        if self._keeper is not None and self.address:
            await self._keeper.tend(self._submit_job, work_left=work_left, emit=emit)

    def drain_window(self) -> float | None:
        """``[cluster.slurm] walltime_drain``: its workers retire before the walltime (``--lifetime``)."""
        return self.slurm.walltime_drain

    async def retiring(self, worker: str, *, work_left: bool, emit: EventSink = ignore) -> None:
        """Submit the replacement of the retiring worker's job now (`JobKeeper.replace_ahead`)."""
        if self._keeper is not None and self.address:
            await self._keeper.replace_ahead(worker, self._submit_job, work_left=work_left, emit=emit)

    async def _submit_job(self, name: str) -> str:
        """Submit one more worker job, its workers named ``name``; its Slurm job id."""
        job = slurm_job(scheduler=self.address, name=name, **self.job_options())
        try:
            await job.start()
        except RuntimeError as exc:
            raise submit_error(exc) from None
        self._replacements.append(job)
        return str(job.job_id)

    async def close(self) -> None:
        """Cancel every job (``scancel``), stop the scheduler, and wait (up to `CANCEL_WAIT` s)
        until Slurm lists none of the jobs any more."""
        job_ids = [job_id for job_id in self.jobs.values() if job_id]
        self.jobs, self._keeper, self._replacements = {}, None, []
        await cancel_jobs(job_ids)
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            # its jobs are cancelled already: a slow or failing scheduler close must not hide that
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cluster.close(), 30)
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            await scheduler.close()
        if self.spec.tls:
            from .tls import remove_credentials

            remove_credentials(self.tls_folder)  # the jobs are gone: nothing reads them any more
        await wait_gone(job_ids)

    # -- what a client needs ----------------------------------------------------------------

    def worker_names(self) -> dict[str, str]:
        names = slot_worker_names(jobs=self.slurm.jobs, processes=self.slurm.processes)
        if isinstance(self._keeper, WarmJobKeeper):  # a warm cluster's slots: the jobs that replaced its first ones
            return current_worker_names(names, self._keeper.current())
        return names

    async def missing_workers_report(self, joined: set[str]) -> str:
        """For each job whose workers never joined: its Slurm state and the end of its error file."""
        try:
            states = await job_states(self.jobs.values())
        except AgiError as exc:
            states, problem = {}, exc.message
        else:
            problem = ""
        parts = [problem] if problem else []
        for name, job_id in self.jobs.items():
            if any(worker == name or worker.startswith(f"{name}-") for worker in joined):
                continue
            state = states.get(job_id)
            ended = self._keeper.ended.get(job_id) if self._keeper is not None else None
            where = f"{state.state} on {state.node or '-'} ({state.reason})" if state else (ended or "no longer queued")
            err = self.log_directory / f"{job_name(self.spec.app)}-{job_id}.err"
            tail = "\n".join(err.read_text(errors="replace").splitlines()[-15:]) if err.exists() else "(no output file yet)"
            parts.append(f"--- Slurm job {job_id} ({name}): {where}; {err}:\n{tail}")
        return "\n".join(parts)

    def started(self) -> tuple[ProcessRecord, ...]:
        scheduler = self._scheduler.started() if self._scheduler is not None else ()
        jobs = tuple(ProcessRecord(self.nodes.get(job_id) or SLURM_HOST, "worker", name, int(job_id),
                                   str(self.log_directory / f"{job_name(self.spec.app)}-{job_id}.err"))
                     for name, job_id in self.jobs.items() if job_id.isdigit())
        return (*scheduler, *jobs)

    def install_host_for(self, host: str) -> str | None:
        """Every job runs the one venv on the shared filesystem: the login node rebuilds it. None
        when the jobs run ``[cluster.slurm] python`` instead: agi builds nothing they run."""
        return None if self.slurm.python else self.slurm.login or LOCAL_HOST

    # -- warm clusters ----------------------------------------------------------------------

    @classmethod
    def warm(cls, spec: ClusterSpec) -> SlurmCluster:
        return cls(spec, warm=True)

    def state(self) -> dict[str, Any]:
        scheduler = self._scheduler.state() if self._scheduler is not None else {"processes": []}
        # the job script of the replacements that runs submit (`slurm_warm`), its worker's name left open
        script = slurm_job(scheduler=self.address, name=NAME_MARK, **self.job_options()).job_script() if self.address else ""
        return {**scheduler, "address": self.address, "dashboard": self.dashboard, "jobs": dict(self.jobs),
                "nodes": dict(self.nodes), "tls_id": self._tls_id, "job_script": script, "replaced": {}}

    @classmethod
    def attach(cls, spec: ClusterSpec, state: dict[str, Any]) -> SlurmCluster:
        backend = cls(spec, warm=True)
        backend.address, backend.dashboard = state.get("address", ""), state.get("dashboard")
        backend.jobs, backend.nodes = dict(state.get("jobs", {})), dict(state.get("nodes", {}))
        backend._tls_id = state.get("tls_id", backend._tls_id)
        host = HostAddress.parse(backend.address.split("://")[-1]).host if backend.address else "127.0.0.1"
        backend._scheduler = LaunchedCluster.attach(backend._scheduler_spec(host), state)
        backend.jobs = {name: job_id for name, job_id in backend.jobs.items() if job_id}  # ("": being submitted)
        shared = WarmJobs.of(state)
        if shared is not None:  # a run attached to it replaces its jobs (`slurm_warm`)
            backend._keeper = WarmJobKeeper(backend.jobs, shared, dict(state.get("replaced", {})),
                                            limit=backend.slurm.job_limit(), pending_timeout=backend.slurm.pending_timeout)
        return backend
