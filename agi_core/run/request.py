"""`RunRequest`: what one call asks for, resolved once from call arguments, settings and profiles.

Every `AGI` call (run, get_distrib, install, doctor, cluster up/status/down) starts with
`resolve()`, which is the one place that decides the mode ("the call's, else the settings'"),
the worker map and the share. The request is frozen, prints as JSON, and is what a run records,
what snippets print and what the web UI sends.

>>> from agi_core import AgiEnv
>>> request = resolve(AgiEnv(app="mandelbrot"), mode="dp", args={"width": 64})
>>> request.mode, request.args["width"], request.executor
(5, 64, 'dask')
>>> RunRequest.from_json(request.to_json()) == request
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..base.errors import SettingsError
from ..base.modes import Mode
from ..base.paths import default_share
from ..kernels.shape import ExecutionShape
from ..provenance import StepRecord
from ..settings import CacheSettings, ClusterSettings, call_overrides

if TYPE_CHECKING:
    from ..app.env import AgiEnv

__all__ = ["REQUEST_SCHEMA", "RunRequest", "resolve"]

REQUEST_SCHEMA = "agi.request.v1"


class RunRequest(BaseModel):
    """A call's inputs, resolved: the app, its validated args, the mode, the cluster settings."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, defer_build=True)

    schema_: str = Field(default=REQUEST_SCHEMA, alias="schema")
    app: str
    apps_path: tuple[str, ...] | None = None  # None: the default search path
    args: dict[str, Any]
    mode: int = Field(ge=0, le=15)
    cluster: ClusterSettings
    settings_file: str
    settings_hash: str
    plan_file: str | None = Field(default=None, description="run this (edited) work plan instead of a fresh one")
    use_cache: bool = Field(default=True, description="reuse cached partition results, and store new ones")
    refresh: tuple[str, ...] = Field(default=(), description="partitions computed again even when cached")
    cache: CacheSettings = Field(default_factory=CacheSettings, description="the [cache] table (input stamps, audit share, "
                                  "whether every result must be stored)")
    resume: str | None = Field(default=None, description="the run whose unfinished partitions this run completes")
    step: StepRecord | None = Field(default=None, description="the pipeline step this run belongs to")
    shape: ExecutionShape = Field(default_factory=ExecutionShape, description="how it executes, derived from mode and "
                                  "cluster once, when the request is made: executor, kernel kinds, threads, GPU policy")

    @model_validator(mode="before")
    @classmethod
    def _derive_shape(cls, data: Any) -> Any:
        """The shape of the mode and the ``[cluster]`` kernel settings, unless given (read back from JSON)."""
        if isinstance(data, dict) and data.get("shape") is None and "mode" in data:
            cluster = data.get("cluster")
            if isinstance(cluster, dict):
                compiled, rapids = cluster.get("compiled", "cython"), cluster.get("rapids", True)
            else:
                compiled, rapids = getattr(cluster, "compiled", "cython"), getattr(cluster, "rapids", True)
            data = {**data, "shape": ExecutionShape.of(data["mode"], compiled=compiled, rapids=rapids)}
        return data

    @property
    def run_mode(self) -> Mode:
        """The mode, for showing it (what runs is `shape`)."""
        return Mode(self.mode)

    @property
    def executor(self) -> str:
        """The registry name of the executor this request runs on."""
        return self.shape.executor

    @property
    def share(self) -> Path:
        """The cluster share: ``workers_data_path``, else the local default share."""
        path = self.cluster.workers_data_path
        return Path(path).expanduser() if path else default_share()

    def env(self) -> AgiEnv:
        """The app this request names (found again, e.g. in another process that received it)."""
        from ..app.env import AgiEnv

        return AgiEnv(app=self.app, apps_path=list(self.apps_path) if self.apps_path is not None else None)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())

    @classmethod
    def from_json(cls, text: str) -> RunRequest:
        return cls.model_validate_json(text)

    def __str__(self) -> str:
        return self.model_dump_json(by_alias=True, indent=1)


def resolve(
    env: AgiEnv, *, scheduler: str | None = None, workers: Mapping[str, Any] | None = None,
    mode: Mode | int | str | None = None, args: Mapping[str, Any] | None = None,
    cluster: Mapping[str, Any] | None = None, app_args: Mapping[str, Any] | None = None,
    plan: str | Path | None = None, use_cache: bool = True, refresh: tuple[str, ...] = (), with_bits: Mode = Mode(0),
    audit: float | None = None, require_cache: bool | None = None,
) -> RunRequest:
    """Build the request of one call: profile < settings file < call arguments; the mode is the
    call's when given, else the one the settings' ``[cluster]`` bits switch on, plus ``with_bits``
    (``agi cluster up`` always has the cluster bit). ``audit``: the share of cache hits to
    recompute and compare, instead of ``[cache] audit``; ``require_cache``: whether a result that
    cannot be stored fails the run, instead of ``[cache] require``.

    App arguments may come as ``args=`` or as keywords (``app_args``), not both for one key.
    The pipeline step the run belongs to comes from the environment (`run.step`), where
    ``agi steps run`` puts it.
    """
    from .step import step_from_environment

    clash = sorted(set(args or {}) & set(app_args or {}))
    if clash:
        raise SettingsError(f"argument(s) {', '.join(clash)} given both in args= and as keywords", fix="give each once")
    settings = env.settings(args={**(args or {}), **(app_args or {})}, cluster=call_overrides(scheduler, workers, cluster))
    run_mode = (Mode.parse(mode) if mode is not None else settings.cluster.mode) | with_bits
    cache = settings.cache
    if audit is not None:
        try:
            cache = CacheSettings.model_validate({**cache.model_dump(), "audit": audit})
        except ValueError:
            raise SettingsError(f"audit {audit!r}: expected a fraction of the cache hits between 0 and 1",
                                fix="give e.g. --audit 0.05 (5% of the hits), or --audit 1 (all of them)") from None
    if require_cache is not None:
        cache = cache.model_copy(update={"require": require_cache})
    return RunRequest(
        app=env.name, apps_path=tuple(str(p) for p in env.apps_paths) if env.apps_path_given else None,
        args=settings.args.model_dump(mode="json"), mode=int(run_mode), cluster=settings.cluster,
        settings_file=str(settings.path), settings_hash=settings.hash,
        plan_file=str(plan) if plan is not None else None, use_cache=use_cache, refresh=tuple(refresh), cache=cache,
        step=step_from_environment(),
    )
