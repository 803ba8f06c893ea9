"""`AGI`: the calls a user (or a generated snippet) makes. A thin facade: each call resolves its
arguments into a `RunRequest` and hands it to the part that does the work.

>>> import asyncio, tempfile
>>> env = AgiEnv(app="mandelbrot")
>>> share = tempfile.mkdtemp()
>>> result = asyncio.run(AGI.run(env, mode=0, width=64, height=48, bands=4, cluster={"workers_data_path": share}))
>>> result.status, len(result.results)
('ok', 4)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .app.env import AgiEnv
from .base.collection_pause import making_long_lived
from .base.errors import SettingsError
from .base.events import EventSink, ignore
from .base.main_guard import refuse_in_reimport
from .base.modes import Mode
from .base.share_access import ShareAccess, share_umask
from .executors import Outcome
from .plan import WorkPlan
from .run import Runner, RunRequest, RunResult, chosen_plan, fresh_plan, resolve, resume_request

__all__ = ["AGI", "RunResult"]

Hosts = Mapping[str, Any]


class AGI:
    """The public entry points. All are coroutines; every argument not given comes from settings.
    ``on_event`` receives typed events (`agi_core.base.events`) as the work progresses."""

    @staticmethod
    async def run(
        env: AgiEnv, *, scheduler: str | None = None, workers: Hosts | None = None, mode: Mode | int | str | None = None,
        plan: WorkPlan | str | Path | None = None, args: Mapping[str, Any] | None = None, cluster: Hosts | None = None,
        use_cache: bool = True, refresh: Iterable[str] = (), resume: str | None = None, audit: float | None = None,
        require_cache: bool | None = None,
        on_event: EventSink | None = None, on_outcome: Callable[[Outcome], None] | None = None, **app_args: Any,
    ) -> RunResult:
        """Run the app: plan (or take ``plan``), execute by mode, reduce, and write the run record.

        Results are cached on the share: a partition whose key (code, args it reads, payload,
        dependencies, kernel) is in the cache is not computed again. ``use_cache=False`` neither
        reads nor writes the cache; ``refresh`` names partitions to compute again anyway.
        ``audit`` (0 to 1, instead of ``[cache] audit``) recomputes that share of the cache hits
        (at least one), chosen at random, and compares each result with the cached one: a
        mismatch is a warning and a ``cache: mismatch`` in the record, and the fresh result is
        used and replaces the entry (docs/cache.md, "Audits").
        ``require_cache=True`` (instead of ``[cache] require``) fails the run when a result could
        not be stored in the cache (a full or read-only share); by default that is a warning,
        ``N results not cached: <reason>``, in the record.
        ``resume`` (a run id, or ``"last"``) runs a failed, interrupted or abandoned run again
        with its own request and plan: only what did not finish is computed. It takes no other
        argument but ``cluster`` (to find the share) and the callbacks.

        ``on_outcome`` gets each partition's `Outcome` (its result as data) as soon as it arrives.
        Raises `RunError` (with the partial result on ``.result``) when a partition fails, after
        every other partition has run. Ctrl-C stops the workers and still writes the record.
        """
        refuse_in_reimport("AGI.run")
        if audit and not use_cache:
            raise SettingsError("audit recomputes cache hits: it cannot be given with use_cache=False (--no-cache)",
                                fix="drop one of them")
        if require_cache and not use_cache:
            raise SettingsError("require_cache (--require-cache) asks that every result be stored in the cache: it cannot be "
                                "given with use_cache=False (--no-cache)", fix="drop one of them")
        request = resolve(env, scheduler=scheduler, workers=workers, mode=mode, args=args, cluster=cluster, app_args=app_args,
                          plan=plan if isinstance(plan, str | Path) else None, use_cache=use_cache, refresh=tuple(refresh),
                          audit=audit, require_cache=require_cache)
        if resume is not None:
            given = [name for name, value in (("scheduler", scheduler), ("workers", workers), ("mode", mode), ("plan", plan),
                                              ("args", args or app_args), ("refresh", tuple(refresh)),
                                              ("audit", audit is not None)) if value]
            if given or not use_cache:
                raise SettingsError(f"resume re-runs run {resume} with its own request; "
                                    f"{', '.join(given) or 'use_cache=False'} cannot be given with it",
                                    fix="resume without them, or start a new run")
            request = resume_request(env, request, resume)
            if require_cache is not None:  # how strict to be about storing is this call's choice, not the old run's
                request = request.model_copy(update={"cache": request.cache.model_copy(update={"require": require_cache})})
            plan = None
        return await AGI.run_request(request, env=env, plan=plan, on_event=on_event, on_outcome=on_outcome)

    @staticmethod
    async def run_request(request: RunRequest, *, env: AgiEnv | None = None, plan: WorkPlan | str | Path | None = None,
                          on_event: EventSink | None = None, on_outcome: Callable[[Outcome], None] | None = None) -> RunResult:
        """Run a resolved request (what a snippet or the web UI sends)."""
        env = env or request.env()
        with share_umask(ShareAccess.of(request.cluster.share.group_access)):  # the modes of what the run creates on the share
            with making_long_lived():  # the plan lives as long as the run
                chosen = chosen_plan(env, request, plan)
            return await Runner(env, request, chosen, emit=on_event or ignore, on_outcome=on_outcome).run()

    @staticmethod
    async def get_distrib(
        env: AgiEnv, *, scheduler: str | None = None, workers: Hosts | None = None, mode: Mode | int | str | None = None,
        args: Mapping[str, Any] | None = None, cluster: Hosts | None = None, **app_args: Any,
    ) -> WorkPlan:
        """The balanced work plan this run would use, without running it.

        >>> import asyncio
        >>> plan = asyncio.run(AGI.get_distrib(AgiEnv(app="mandelbrot"), mode="p", bands=8))
        >>> len(plan.partitions)
        8
        """
        return fresh_plan(env, resolve(env, scheduler=scheduler, workers=workers, mode=mode, args=args, cluster=cluster,
                                       app_args=app_args))

    @staticmethod
    async def install(env: AgiEnv, *, scheduler: str | None = None, workers: Hosts | None = None,
                      modes_enabled: Mode | int | str | None = None, cluster: Hosts | None = None,
                      on_event: EventSink | None = None) -> Any:
        """Install the app, agi_core and pinned dependencies on the scheduler host and every worker
        host (over SSH; this machine locally), concurrently. Returns an `InstallReport`; raises
        `InstallError` naming every host that failed, after all hosts have finished."""
        from .install import install_app
        request = resolve(env, scheduler=scheduler, workers=workers, mode=modes_enabled, cluster=cluster)
        return await install_app(env, request.cluster, request.run_mode, on_event=on_event or ignore)

    @staticmethod
    async def doctor(env: AgiEnv, *, scheduler: str | None = None, workers: Hosts | None = None,
                     modes_enabled: Mode | int | str | None = None, cluster: Hosts | None = None) -> Any:
        """Check every host without changing anything; returns a `DoctorReport` (``.ok``)."""
        from .install.doctor import doctor_app
        request = resolve(env, scheduler=scheduler, workers=workers, mode=modes_enabled, cluster=cluster)
        return await doctor_app(env, request.cluster, request.run_mode)

    @staticmethod
    async def cluster_up(env: AgiEnv, *, mode: Mode | int | str | None = None, cluster: Hosts | None = None,
                         on_event: EventSink | None = None) -> Any:
        """Start the app's Dask cluster and leave it running (a warm cluster runs attach to)."""
        from .cluster import cluster_up, spec_for
        from .run.preflight import local_worker_python

        request = resolve(env, mode=mode, cluster=cluster, with_bits=Mode.CLUSTER)
        python = local_worker_python(env, request, on_event or ignore)
        spec = spec_for(request.cluster, request.shape, env.name, app_distribution=env.distribution,
                        app_version=env.version(), local_python=python, project_dir=env.project_dir)
        return await cluster_up(env.name, spec, emit=on_event or ignore)

    @staticmethod
    async def cluster_status(env: AgiEnv, *, cluster: Hosts | None = None) -> Any:
        """Whether the app's warm cluster runs, and its workers."""
        from .cluster import cluster_status, spec_for

        request = resolve(env, cluster=cluster, with_bits=Mode.CLUSTER)
        return await cluster_status(env.name, spec_for(request.cluster, request.shape, env.name))

    @staticmethod
    async def cluster_down(env: AgiEnv, *, cluster: Hosts | None = None) -> int:
        """Stop every process of the app's warm cluster; returns how many were stopped."""
        from .cluster import cluster_down, spec_for

        request = resolve(env, cluster=cluster, with_bits=Mode.CLUSTER)
        return await cluster_down(env.name, spec_for(request.cluster, request.shape, env.name))
