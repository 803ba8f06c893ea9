"""`AGI`: the calls a user (or a generated snippet) makes: plan a run, and run it.

>>> import asyncio, tempfile
>>> env = AgiEnv(app="mandelbrot")
>>> share = tempfile.mkdtemp()
>>> result = asyncio.run(AGI.run(env, mode=0, width=64, height=48, bands=4, cluster={"workers_data_path": share}))
>>> result.status, len(result.results)
('ok', 4)
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .app import WorkContext
from .atomic import write_json_atomic
from .env import AgiEnv
from .errors import PlanError, RunError, SettingsError
from .executors import JobSpec, LocalExecutor, Outcome
from .hosts import LOCAL_HOST, is_local_host
from .kernels import gpu_visible, select_kernels
from .modes import Mode
from .plan import Slot, WorkPlan, build_plan, slots_for
from .progress import RunProgress
from .provenance import RUN_SCHEMA, RunStore, iso, new_run_id
from .settings import Settings, WorkerSpec, call_overrides

__all__ = ["AGI", "RunResult"]

LOCAL_SLOT_HOST = "localhost"


@dataclass
class RunResult:
    """What a run gives back: the reduced value, every partition's result, and where the record is."""

    run_id: str
    app: str
    mode: Mode
    status: str
    value: Any = field(repr=False)
    results: dict[str, Any] = field(repr=False)  # partition results can be large: not in the repr
    outcomes: list[Outcome] = field(repr=False)
    run_dir: Path
    plan: WorkPlan = field(repr=False)
    duration_s: float = 0.0

    @property
    def out_dir(self) -> Path:
        return self.run_dir / "out"

    @property
    def manifest(self) -> Path:
        return self.run_dir / "manifest.json"


@dataclass(frozen=True)
class _Request:
    """A call's inputs, resolved: settings, mode and the slots the plan is balanced over."""

    env: AgiEnv
    settings: Settings
    mode: Mode
    slots: list[Slot]

    @property
    def args(self) -> dict[str, Any]:
        return self.settings.args.model_dump(mode="json")


class AGI:
    """The public entry points. All are coroutines; every argument not given comes from settings."""

    @staticmethod
    async def install(
        env: AgiEnv, *, scheduler: str | None = None, workers: Mapping[str, Any] | None = None,
        modes_enabled: Mode | int | str | None = None, cluster: Mapping[str, Any] | None = None,
        progress: bool | None = None,
    ) -> Any:
        """Install the app, agi_core and pinned dependencies on the scheduler host and every worker
        host (over SSH; this machine locally), concurrently. Returns an `InstallReport`; raises
        `InstallError` naming every host that failed, after all hosts have finished.

        >>> report = asyncio.run(AGI.install(AgiEnv(app="mandelbrot"), workers={"127.0.0.1": 1}))  # doctest: +SKIP
        """
        from .install import install_app

        return await install_app(env, scheduler=scheduler, workers=workers, modes_enabled=modes_enabled,
                                 cluster=cluster, progress=progress)

    @staticmethod
    async def doctor(
        env: AgiEnv, *, scheduler: str | None = None, workers: Mapping[str, Any] | None = None,
        modes_enabled: Mode | int | str | None = None, cluster: Mapping[str, Any] | None = None,
    ) -> Any:
        """Check every host without changing anything; returns a `DoctorReport` (``.ok``)."""
        from .install.doctor import doctor_app

        return await doctor_app(env, scheduler=scheduler, workers=workers, modes_enabled=modes_enabled, cluster=cluster)

    @staticmethod
    async def get_distrib(
        env: AgiEnv, *, scheduler: str | None = None, workers: Mapping[str, Any] | None = None,
        mode: Mode | int | str | None = None, args: Mapping[str, Any] | None = None,
        cluster: Mapping[str, Any] | None = None, **app_args: Any,
    ) -> WorkPlan:
        """The balanced work plan this run would use, without running it.

        >>> plan = asyncio.run(AGI.get_distrib(AgiEnv(app="mandelbrot"), mode="p", bands=8))
        >>> len(plan.partitions)
        8
        """
        request = _resolve(env, scheduler, workers, mode, args, cluster, app_args)
        return _plan(request)

    @staticmethod
    async def run(
        env: AgiEnv, *, scheduler: str | None = None, workers: Mapping[str, Any] | None = None,
        mode: Mode | int | str | None = None, plan: WorkPlan | str | Path | None = None,
        args: Mapping[str, Any] | None = None, cluster: Mapping[str, Any] | None = None,
        progress: bool | None = None, on_outcome: Callable[[Outcome], None] | None = None, **app_args: Any,
    ) -> RunResult:
        """Run the app: plan (or take ``plan``), execute by mode, reduce, and write the run record.

        ``on_outcome`` is called with each partition's `Outcome` (its result as data) as soon as
        it arrives, before the run ends.

        Raises `RunError` (with the partial result on ``.result``) when a partition fails, after
        every other partition has run. Ctrl-C stops the workers and still writes the record.
        """
        request = _resolve(env, scheduler, workers, mode, args, cluster, app_args)
        fresh = _plan(request)
        if plan is not None:
            chosen = plan if isinstance(plan, WorkPlan) else WorkPlan.load(plan)
            origin = str(plan) if not isinstance(plan, WorkPlan) else "the given plan"
            chosen.check(origin=origin)
            chosen.check_current(fresh, origin=origin)
        else:
            chosen = fresh
        show = sys.stderr.isatty() if progress is None else progress
        note = ""
        workers_here = not request.mode & Mode.CLUSTER or all(is_local_host(slot.host) for slot in chosen.slots)
        if request.mode & Mode.CYTHON and workers_here:  # remote hosts compiled theirs at `agi install`
            _compile_kernels(env, show)
        if not request.mode & Mode.CLUSTER:  # on a cluster, each worker picks its kernels (and records which)
            note = select_kernels(env.module_name.split(".")[0], request.mode).note  # fails early if a kernel is missing
        return await _Run(request, chosen, note, on_outcome).execute(show)


def _compile_kernels(env: AgiEnv, show: bool) -> None:
    """Compile the app's .pyx kernels in its source folder when missing or older than their source."""
    from .install.cython_build import build_in_place, stale_pyx

    package_dir = env.src_dir / env.module_name.split(".")[0]
    if stale_pyx(package_dir):
        if show:
            _say(f"compiling the Cython kernels of {env.name} in {package_dir} (once; they are reused until the .pyx changes)")
        build_in_place(package_dir)


def _say(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(text)


def _resolve(env: AgiEnv, scheduler: str | None, workers: Mapping[str, Any] | None, mode: Any,
             args: Mapping[str, Any] | None, cluster: Mapping[str, Any] | None, app_args: Mapping[str, Any]) -> _Request:
    clash = sorted(set(args or {}) & set(app_args))
    if clash:
        raise SettingsError(f"argument(s) {', '.join(clash)} given both in args= and as keywords", fix="give each once")
    settings = env.settings(args={**(args or {}), **app_args}, cluster=call_overrides(scheduler, workers, cluster))
    run_mode = Mode.parse(mode) if mode is not None else settings.cluster.mode
    return _Request(env, settings, run_mode, _slots(settings, run_mode))


def _slots(settings: Settings, mode: Mode) -> list[Slot]:
    """Cluster bit: one slot per worker of the worker map (default: this machine, one per core). Otherwise slots on this machine: as many
    as the local worker count (or cores) with the pool bit, one without it."""
    if mode & Mode.CLUSTER:
        workers = settings.cluster.workers or {LOCAL_HOST: WorkerSpec(count=settings.cluster.local_worker_count())}
        return slots_for(workers)  # no worker map: the embedded default, a cluster on this machine
    width = settings.cluster.local_worker_count() if mode & Mode.POOL else 1
    capabilities = ("gpu",) if gpu_visible() else ()
    return [Slot(f"{LOCAL_SLOT_HOST}-{k}", LOCAL_SLOT_HOST, 1.0, capabilities) for k in range(width)]


def _plan(request: _Request) -> WorkPlan:
    app = request.env.app_class()
    partitions = app.plan(request.settings.args)
    if not isinstance(partitions, list | tuple):
        raise PlanError(f"{request.env.app_class.__name__}.plan() returned {type(partitions).__name__}, not a list of Partition",
                        fix="return a list of agi_core.Partition")
    return build_plan(request.env.name, request.args, partitions, request.slots)


class _Run:
    """One run in progress: its folder, its executor, its outcomes, and its record."""

    def __init__(self, request: _Request, plan: WorkPlan, kernel_note: str,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.request = request
        self.on_outcome = on_outcome
        self.plan = plan
        self.kernel_note = kernel_note
        self.run_id = new_run_id()
        self.run_dir = RunStore(request.settings.share).run_dir(request.env.name, self.run_id)
        self.outcomes: dict[str, Outcome] = {}
        self.started = time.time()
        self.status = "running"
        self.error: str | None = None
        self.cluster_record: dict[str, Any] | None = None
        env = request.env
        self.app_record = {"name": env.name, "version": env.version(), "code_hash": env.code_hash(),
                           "git_commit": env.git_commit(), "project_dir": str(env.project_dir)}

    async def execute(self, show_progress: bool) -> RunResult:
        request = self.request
        self.run_dir.mkdir(parents=True)
        (self.run_dir / "out").mkdir()
        self.plan.save(self.run_dir / "plan.json")
        self._write()
        job = JobSpec(request.env.src_dir, request.env.module_name, request.env.class_name,
                      request.args, int(request.mode), self.run_dir / "out")
        value = None
        try:
            if request.mode & Mode.CLUSTER:
                await self._on_cluster(job, show_progress)
            else:
                await self._locally(job, show_progress)
            failed = [o for o in self.outcomes.values() if o.status != "ok"]
            if not failed:
                value = self._reduce(job)
            self.status = "failed" if failed or self.error else "ok"
        except (KeyboardInterrupt, asyncio.CancelledError):
            self.status, self.error = "interrupted", "interrupted by the user (Ctrl-C)"
            self._write()
            raise
        except BaseException:
            self.status, self.error = "failed", traceback.format_exc()
            self._write()
            raise
        self._write()
        result = self._result(value)
        if self.status != "ok":
            raise RunError(self._failure_message(), fix=f"see the record: agi runs show {self.run_id}", result=result)
        return result

    async def _collect(self, executor: Any, job: JobSpec, show_progress: bool) -> None:
        title = f"{self.request.env.name} mode {self.request.mode}"
        with RunProgress(self.plan, enabled=show_progress, title=title) as bar:
            async for outcome in executor.execute(self.plan, job):
                self.outcomes[outcome.id] = outcome
                bar.update(outcome)
                if self.on_outcome is not None:
                    self.on_outcome(outcome)

    async def _locally(self, job: JobSpec, show_progress: bool) -> None:
        executor = LocalExecutor(processes=bool(self.request.mode & Mode.POOL))
        try:
            executor.start(self.plan, job)
            await self._collect(executor, job, show_progress)
        except BaseException:
            executor.kill()  # Ctrl-C or an error: stop the slot processes at once
            raise
        await executor.close()

    async def _on_cluster(self, job: JobSpec, show_progress: bool) -> None:
        import dask
        import distributed  # noqa: F401 - registers its config defaults before we override some

        from .cluster import cluster_spec, dask_config, open_cluster
        from .executors.dask import DaskExecutor

        cluster = self.request.settings.cluster
        spec = cluster_spec(cluster, self.request.mode, local_threads=os.cpu_count())
        with dask.config.set(dask_config(spec)):
            async with open_cluster(self.request.env.name, spec, cluster) as handle:
                self.cluster_record = {"scheduler": handle.backend.address, "dashboard": handle.backend.dashboard,
                                       "warm": handle.warm, **({"note": handle.note} if handle.note else {})}
                if show_progress:
                    _say(f"Dask scheduler {handle.backend.address}" + (f", dashboard {handle.backend.dashboard}" if handle.backend.dashboard else "")
                         + (" (warm cluster)" if handle.warm else "") + (f"\n{handle.note}" if handle.note else ""))
                self._write()
                executor = DaskExecutor(handle.client, self.run_id, max_tasks_per_slot=spec.dask.max_tasks_per_slot,
                                        retries=spec.dask.retries)
                try:
                    await self._collect(executor, job, show_progress)
                    for pid, count in (await executor.retries_by_partition()).items():
                        if pid in self.outcomes:
                            self.outcomes[pid].retries = count
                finally:
                    await executor.close()

    def _reduce(self, job: JobSpec) -> Any:
        app = self.request.env.app_class()
        # reduce runs here, on the manager, which need not have compiled or GPU kernels
        kernels = select_kernels(job.module_name.split(".")[0], Mode(0))
        ctx = WorkContext(args=self.request.settings.args, kernels=kernels.module, kernel_kind=kernels.kind, device=kernels.device, out_dir=job.out_dir,
                          log=logging.getLogger(f"agi.app.{job.module_name}"), slot="manager")
        try:
            return app.reduce({pid: o.result for pid, o in self.outcomes.items()}, ctx)
        except Exception:  # noqa: BLE001 - recorded and raised as the run's failure
            self.error = "App.reduce failed:\n" + traceback.format_exc()
            return None

    def _failure_message(self) -> str:
        bad = [o for o in self.outcomes.values() if o.status == "failed"]
        if bad:
            first = bad[0]
            others = f" ({len(bad) - 1} more failed)" if len(bad) > 1 else ""
            skipped = sum(o.status == "skipped" for o in self.outcomes.values())
            return (f"partition '{first.id}' failed on slot {first.slot}{others}"
                    + (f"; {skipped} skipped for failed dependencies" if skipped else "")
                    + f"; {sum(o.status == 'ok' for o in self.outcomes.values())} succeeded\n{(first.error or '').rstrip()}")
        return self.error or "the run failed"

    def _result(self, value: Any) -> RunResult:
        return RunResult(
            run_id=self.run_id, app=self.request.env.name, mode=self.request.mode, status=self.status, value=value,
            results={pid: o.result for pid, o in self.outcomes.items() if o.status == "ok"},
            outcomes=list(self.outcomes.values()), run_dir=self.run_dir, plan=self.plan,
            duration_s=time.time() - self.started,
        )

    def _write(self) -> None:
        settings, mode = self.request.settings, self.request.mode
        slot_of = self.plan.slot_of()
        ended = None if self.status == "running" else time.time()
        counts = {status: sum(o.status == status for o in self.outcomes.values()) for status in ("ok", "failed", "skipped")}
        workers: dict[str, dict[str, Any]] = {}
        for outcome in self.outcomes.values():
            if outcome.worker:
                workers.setdefault(outcome.worker, {"host": outcome.host, "slot": outcome.slot, "kernel": outcome.kernel,
                                                    "device": outcome.device})
        write_json_atomic(self.run_dir / "manifest.json", {
            "schema": RUN_SCHEMA,
            "run_id": self.run_id,
            "status": self.status,
            "app": self.app_record,
            "args": self.request.args,
            "mode": {"value": int(mode), "letters": mode.letters},
            "settings_hash": settings.hash,
            "settings_file": str(settings.path),
            "plan": {"fingerprint": self.plan.fingerprint, "partitions": len(self.plan.partitions),
                     "slots": [s.name for s in self.plan.slots], "file": "plan.json"},
            "executor": "dask" if mode & Mode.CLUSTER else "pool" if mode & Mode.POOL else "sequential",
            "cluster": self.cluster_record,
            "manager": {"host": platform.node(), "pid": os.getpid(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "workers": workers,
            "kernel_note": self.kernel_note or None,
            "started": iso(self.started),
            "ended": iso(ended) if ended else None,
            "duration_s": round((ended or time.time()) - self.started, 6),
            "totals": {"partitions": len(self.plan.partitions), **counts,
                       "not_run": len(self.plan.partitions) - len(self.outcomes)},
            "error": self.error,
            "out_dir": str(self.run_dir / "out"),
            "partitions": [self.outcomes[p.id].record() if p.id in self.outcomes else
                           {"id": p.id, "slot": slot_of.get(p.id), "status": "not run"} for p in self.plan.partitions],
        })
