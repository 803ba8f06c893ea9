"""`SlurmCluster` (backend ``slurm``): Dask workers as Slurm batch jobs, through dask-jobqueue.

Each of ``[cluster.slurm] jobs`` jobs runs ``processes`` Dask workers, one plan slot each
(``slurm-0`` …; `SlurmSettings.worker_map`), in the Python of the shared filesystem
(``[cluster.slurm] python``, or the venv `agi install` builds there). For a run, dask-jobqueue's
`SLURMCluster` runs the scheduler in this process and submits the jobs; a warm cluster (`agi
cluster up`) has a detached scheduler on this machine (`LaunchedCluster` without workers) and the
same jobs submitted as dask-jobqueue `SLURMJob`s, so both outlive this process and `agi cluster
down` stops them from their recorded state. Either way, `start` returns once every job runs (or
fails naming Slurm's reason after ``pending_timeout``), and `close` cancels the jobs and waits
until Slurm no longer lists them.

The jobs are named ``agi-<app>`` in the queue. The Dask worker of job ``j`` registers as
``slurm-<j>``, its slot's name, as on SSH clusters (a record whose worker is not its slot shows
a partition that ran elsewhere); with several processes per job they are ``slurm-<j>-<k>``, and
`worker_names` maps the plan's slots to them.

>>> slot_worker_names(jobs=2, processes=1)
{'slurm-0': 'slurm-0', 'slurm-1': 'slurm-1'}
>>> slot_worker_names(jobs=1, processes=2)
{'slurm-0': 'slurm-0-0', 'slurm-1': 'slurm-0-1'}
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shlex
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def _keeping_sigint() -> Iterator[None]:
    """Put back the SIGINT handler after the block: importing dask-jobqueue replaces it with
    ``sys.exit()`` (dask_jobqueue/runner.py), which would turn Ctrl-C of a run into a SystemExit
    raised wherever the event loop happens to be, instead of our orderly interrupt."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


#: what installs dask-jobqueue, which the backend needs (the ``slurm`` extra of agi's distribution)
EXTRA_FIX = "pip install 'agi-orchestrator[slurm]' (the slurm extra: dask-jobqueue)"


def jobqueue() -> Any:
    """The ``dask_jobqueue`` module, imported now (its SIGINT handler undone: `_keeping_sigint`).

    Raises `AgiError` naming the ``slurm`` extra when it is not installed: the backend's class
    and its options load without it, so settings and `agi cluster ports` work anyway."""
    try:
        with _keeping_sigint():
            import dask_jobqueue
            import dask_jobqueue.slurm  # noqa: F401 - SLURMJob
    except ImportError as exc:
        raise AgiError(f'[cluster] backend = "slurm" needs dask-jobqueue, which is not installed ({exc})',
                       fix=EXTRA_FIX) from None
    return dask_jobqueue


from ..cache.auth import KEY_ENV  # noqa: E402 - after the helper above, which the class below uses
from ..errors import AgiError  # noqa: E402
from ..events import EventSink, Notice, Phase, ignore  # noqa: E402
from ..execution_shape import ExecutionShape  # noqa: E402
from ..hosts import LOCAL_HOST, HostAddress, slot_name  # noqa: E402
from .backend import ClusterBackend, ProcessRecord  # noqa: E402
from .cache_key import publish_key  # noqa: E402
from .client import config_yaml  # noqa: E402
from .inprocess import dashboard_address, http_address  # noqa: E402
from .launched import LaunchedCluster  # noqa: E402
from .slurm_gpu import PRELOAD as SLURM_GPU_PRELOAD  # noqa: E402
from .slurm_options import SLURM_HOST, SlurmSettings  # noqa: E402
from .slurm_queue import cancel_jobs, check_slurm, job_states, submit_error, wait_gone, wait_until_running  # noqa: E402
from .slurm_requeue import JobKeeper  # noqa: E402
from .spec import ClusterSpec  # noqa: E402

__all__ = ["SlurmCluster", "SlurmSettings", "slot_worker_names"]


def _is_loopback(host: str) -> bool:
    """True when ``host`` (a name or an address) resolves to a loopback address only."""
    import ipaddress

    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


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


def _jobqueue_cluster(**options: Any) -> Any:
    """dask-jobqueue's `SLURMCluster`, its job ``j``'s worker named `job_worker_name` (``slurm-<j>``)."""

    class JobqueueCluster(jobqueue().SLURMCluster):  # type: ignore[misc,name-defined]
        def _new_worker_name(self, worker_number: int) -> str:  # dask's documented hook for worker names
            return job_worker_name(worker_number)

    return JobqueueCluster(**options)


def _slurm_job(**options: Any) -> Any:
    """One dask-jobqueue `SLURMJob` (a warm cluster's worker job, or the script `--dry-run` shows)."""
    return jobqueue().slurm.SLURMJob(**options)


class SlurmCluster(ClusterBackend):
    """A scheduler on this machine and ``[cluster.slurm] jobs`` worker jobs submitted to Slurm."""

    Options = SlurmSettings
    job_id_env = "SLURM_JOB_ID"  # a worker in a Slurm job: the record names the job
    places_workers = True  # Slurm picks the nodes
    install_kind = "shared"  # one venv on the shared filesystem, built from the login node

    @classmethod
    def default_min_workers(cls, options: Any, expected: int) -> int:
        """One job's workers: the queue starts jobs when it can, and the run starts with the first."""
        return max(1, min(options.processes, expected))

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

    # -- where things are ---------------------------------------------------------------------

    @property
    def tls_folder(self) -> Path:
        """With ``[cluster] tls`` (the default): this cluster's CA, certificate and key, which the
        jobs read on the shared filesystem: ``<log_directory>/tls/<cluster id>/`` (0700, files 0600)."""
        return self.log_directory / "tls" / self._tls_id

    def _shared_tls(self) -> Any:
        from .tls import TlsFiles

        return TlsFiles.in_folder(self.tls_folder)

    def _publish_tls(self) -> None:
        """Make this cluster's own credentials (`tls.make_credentials`) and write them where the
        jobs read them; the scheduler and the client use the same ones."""
        from .tls import make_credentials

        self._credentials = make_credentials([self._bind_host(), *self.spec.tls_names()])
        self._credentials.save(self.tls_folder)

    def security(self) -> Any:
        if not self.spec.tls:
            return None
        if self._scheduler is not None:  # a warm cluster: its scheduler's (read back when attached)
            return self._scheduler.security()
        if self._security is None and self._credentials is not None:
            self._security = self._credentials.security()
        return self._security

    @property
    def log_directory(self) -> Path:
        """The jobs' output files (on the shared filesystem: the manager runs on the cluster)."""
        folder = self.slurm.log_directory or f"{self.spec.root}/logs/{self.spec.app}/slurm"
        return Path(os.path.expanduser(folder))

    @property
    def python(self) -> str:
        """The workers' Python: ``[cluster.slurm] python``, else the venv `agi install` built."""
        return os.path.expanduser(self.slurm.python or f"{self.spec.venv}/bin/python")

    def _bind_host(self) -> str:
        """The address the scheduler listens on, which the jobs must reach: ``[cluster] scheduler``'s
        host when set, else the interface's address, else this machine's hostname."""
        if not self.spec.embedded:
            return self.spec.scheduler.host
        if self.slurm.interface:
            from distributed.utils import get_ip_interface

            try:
                return str(get_ip_interface(self.slurm.interface))
            except (KeyError, ValueError) as exc:
                raise AgiError(f"[cluster.slurm] interface = {self.slurm.interface!r}: {exc}",
                               fix="name an interface of this machine that the compute nodes reach (ip -br addr)") from None
        return socket.gethostname()

    def job_options(self) -> dict[str, Any]:
        """The keyword arguments of dask-jobqueue's `SLURMJob` (and `SLURMCluster`) for these settings."""
        slurm, spec = self.slurm, self.spec
        threads = max(1, spec.workers[0].nthreads) if spec.workers else 1
        gpu = any(w.gpu for w in spec.workers)
        return {
            "queue": slurm.partition, "account": slurm.account, "walltime": slurm.walltime,
            # --cpus-per-task is the job's cores; each worker gets its share as threads only with the pool bit
            "job_cpu": slurm.cores, "cores": slurm.processes * threads, "processes": slurm.processes,
            "memory": slurm.memory, "job_name": job_name(spec.app), "python": shlex.quote(self.python),
            "interface": slurm.interface, "log_directory": str(self.log_directory),
            "local_directory": spec.dask.local_directory, "death_timeout": 60,
            "job_extra_directives": [*slurm.job_extra, *([f"--gres=gpu:{slurm.gpus}"] if gpu else [])],
            # each worker of a GPU job takes its own GPU of the job's (`slurm_gpu`)
            "worker_extra_args": ["--no-dashboard", *(["--resources", "GPU=1", "--preload", SLURM_GPU_PRELOAD] if gpu else []),
                                  # retire before the walltime kills it (its partitions go back; `tend` replaces the job)
                                  "--lifetime", f"{slurm.lifetime():g}s", "--lifetime-stagger", f"{slurm.walltime_stagger:g}s",
                                  "--no-lifetime-restart"],
            "job_script_prologue": [f"export DASK_CONFIG={shlex.quote(str(self.log_directory / 'dask.yaml'))}",
                                    f"export {KEY_ENV}={shlex.quote(str(self.log_directory / 'keys' / 'cache.key'))}",
                                    "export PYTHONUNBUFFERED=1"],
            **(self._tls_options() if spec.tls else {}),
        }

    def _tls_options(self) -> dict[str, Any]:
        from .tls import security_for

        return {"security": security_for(self._shared_tls()), "protocol": "tls://"}

    def job_script(self) -> str:
        """The batch script of one worker job (what `sbatch` gets), for docs and debugging."""
        placeholder = f"{self.spec.protocol}://SCHEDULER:{self.spec.scheduler_port or 'PORT'}"
        return _slurm_job(scheduler=self.address or placeholder, name=job_worker_name(0), **self.job_options()).job_script()

    def dry_run(self) -> str:
        return f"{self.slurm.jobs} Slurm job(s), each running this batch script:\n{self.job_script()}"

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
        if elsewhere and _is_loopback(host):
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
        self._cluster = _jobqueue_cluster(asynchronous=True, name=job_name(spec.app), scheduler_options=scheduler,
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
        jobs = [_slurm_job(scheduler=self.address, name=name, **self.job_options()) for name in names]
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
        job = _slurm_job(scheduler=self.address, name=name, **self.job_options())
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
        return slot_worker_names(jobs=self.slurm.jobs, processes=self.slurm.processes)

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
        return {**scheduler, "address": self.address, "dashboard": self.dashboard, "jobs": dict(self.jobs),
                "nodes": dict(self.nodes), "tls_id": self._tls_id}

    @classmethod
    def attach(cls, spec: ClusterSpec, state: dict[str, Any]) -> SlurmCluster:
        backend = cls(spec, warm=True)
        backend.address, backend.dashboard = state.get("address", ""), state.get("dashboard")
        backend.jobs, backend.nodes = dict(state.get("jobs", {})), dict(state.get("nodes", {}))
        backend._tls_id = state.get("tls_id", backend._tls_id)
        host = HostAddress.parse(backend.address.split("://")[-1]).host if backend.address else "127.0.0.1"
        backend._scheduler = LaunchedCluster.attach(backend._scheduler_spec(host), state)
        return backend

    # -- what the rest of agi asks of the backend (before a cluster exists) ---------------------

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
