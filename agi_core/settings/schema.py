"""The ``[cluster]`` table's schema: pydantic models that check every value, whatever the mode.

A value is checked when it is read, not when a mode first uses it: a scheduler of
``"10.0.0.1:notaport"`` is refused even while the cluster bit is off, so a typo never waits for the
day the cluster is switched on. Host strings (the scheduler, the worker map's keys) go through
`HostAddress.parse`, the one parser of ``[user@]host[:port]``. `agi_core.settings` re-exports
these models; import them from there.

>>> cluster = ClusterSettings.model_validate({"scheduler": "[fe80::1]:8786", "workers": {"agi@10.0.0.2:2222": 2}})
>>> cluster.scheduler_address()
HostAddress(host='fe80::1', user=None, port=8786)
>>> {host: spec.count for host, spec in cluster.worker_map().items()}
{'agi@10.0.0.2:2222': 2}
>>> list(ClusterSettings().worker_map())
['127.0.0.1']
"""

# No `from __future__ import annotations` here: pydantic would compile every field's annotation from
# its string (typing.ForwardRef) at each start of `agi`; these models name only what is imported.

import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails

from ..base.hosts import LOCAL_HOST, HostAddress, is_local_host
from ..base.modes import Mode
from ..base.stalls import StallPolicy
from ..kernels.kinds import compiled_kinds
from .tables import (
    CacheSettings,
    DaskSettings,
    HostKey,
    InstallSettings,
    ShareSettings,
    SshSettings,
    StrictTable,
    WorkerSpec,
    host_string,
)

__all__ = ["CacheSettings", "ClusterSettings", "DaskSettings", "InstallSettings", "ShareSettings", "SshSettings", "WorkerSpec"]


def _backend_model(name: str) -> type[BaseModel]:
    """The options model of the backend ``name`` (`ClusterBackend.Options`), its class imported now."""
    from .backend_plugins import load_backend

    return load_backend(name).Options


class ClusterSettings(StrictTable):
    profile: str | None = Field(default=None, description="name of a profile in settings/")
    # strict: a quoted "yes" or "false" is refused, never read as a boolean
    pool: StrictBool = Field(default=False, description="bit 1: a process per slot on this machine")
    cython: StrictBool = Field(default=False, description="bit 2: compiled CPU kernels")
    cluster_enabled: StrictBool = Field(default=False, description="bit 4: a Dask cluster (scheduler + worker map)")
    rapids: StrictBool | Literal["require"] = Field(
        default=False, description='GPU kernels where a worker has a GPU, CPU kernels (recorded) elsewhere; "require": a '
        "worker without a GPU is an error raised before anything runs")
    compiled: str = Field(default="cython", description="the compiled CPU kernels the cython bit runs: a kernel kind "
                          "of agi_core.kernels.kinds (\"cython\": kernels_cy, \"numba\": kernels_numba)")
    gpu_speed: float = Field(default=1.0, gt=0, description="how many times faster a GPU slot runs a partition that "
                             'prefers "gpu" (with the rapids bit); measure it with the app\'s kernel benchmark')
    backend: str = Field(default="ssh", description='the cluster backend\'s registry name: how workers are started ("ssh", ...)')
    scheduler: str | None = Field(default=None, description="HOST:PORT of the Dask scheduler (IPv6: [ADDR]:PORT)")
    workers_data_path: str | None = Field(default=None, description="the cluster share, same path on every node")
    workers: dict[HostKey, WorkerSpec] = Field(default_factory=dict, description="worker map: [USER@]HOST[:SSH_PORT] = count")
    ssh: SshSettings = Field(default_factory=SshSettings)
    install: InstallSettings = Field(default_factory=InstallSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    tls: StrictBool = Field(default=True, description="mutual TLS between manager, scheduler and workers, with credentials "
                            "made for each cluster; false: plain TCP, where anyone who reaches the ports runs code as you")
    partition_timeout: float | str = Field(
        default="auto", description='how long one partition may run before its worker is stopped and it is retried or '
        'failed: seconds, a multiple of its expected time ("10x"), "auto" (20x, at least 10 minutes; one hour before '
        'any partition finished) or "off" (modes with worker processes: pool, cluster)')
    retries: int = Field(default=2, ge=0, description="times a partition may run again after its worker was lost "
                         "(it died, or was stopped past partition_timeout); then it fails")
    share: ShareSettings = Field(default_factory=ShareSettings, description="who besides you may use what agi keeps on the share")
    min_workers: StrictInt | float | Literal["all"] | None = Field(
        default=None, description='workers that must have joined before the run starts: a count (2), a fraction of the '
        'worker map (0.5) or "all"; None: the backend\'s default (all for ssh, 1 for slurm). The others are waited for '
        "in the background until join_timeout, and take work when they join")
    join_timeout: float | None = Field(default=None, gt=0, description="seconds to wait for min_workers to join (then the "
                                       "run fails) and for the rest (then they are recorded as never joined); None: "
                                       "[cluster.dask] start_timeout")
    # ``[cluster.<name>]`` tables of installed backends (`backend_table`): not fields, each backend's own model
    _backend_tables: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _backend_options(cls, data: Any, handler: Any) -> Any:
        """Take out the ``[cluster.<name>]`` tables that name an installed backend, validate each
        with that backend's options model (errors keep the key: ``cluster.slurm.memory``), and
        keep them beside the fields; any other unknown key is refused as usual."""
        tables: dict[str, Any] = {}
        if isinstance(data, Mapping) and any(key not in cls.model_fields for key in data):
            from .backend_plugins import backend_names

            names = set(backend_names())
            tables = {key: value for key, value in data.items() if key not in cls.model_fields and key in names}
            data = {key: value for key, value in data.items() if key not in tables}
        checked: dict[str, dict[str, Any]] = {}
        errors: list[InitErrorDetails] = []
        for name, table in tables.items():
            try:
                checked[name] = _backend_model(name).model_validate(table).model_dump(mode="json", exclude_unset=True)
            except ValidationError as exc:
                errors += [InitErrorDetails(type=e["type"], loc=(name, *e["loc"]), input=e["input"], ctx=e.get("ctx") or {})
                           for e in exc.errors()]
        try:
            model = handler(data)
        except ValidationError as exc:
            if not errors:
                raise
            errors = [InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"], ctx=e.get("ctx") or {})
                      for e in exc.errors()] + errors
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        if checked:
            model._backend_tables = checked
        return model

    @model_serializer(mode="wrap")
    def _with_backend_tables(self, handler: Any) -> Any:
        """Dumps keep ``[cluster.<name>]`` where it was written, so they read back the same."""
        data = handler(self)
        if isinstance(data, dict):
            data.update({name: dict(table) for name, table in self._backend_tables.items()})
        return data

    @classmethod
    def backend_options_model(cls, name: str) -> type[BaseModel] | None:
        """The options model of ``[cluster.<name>]`` when ``name`` is an installed backend's, else None."""
        from .backend_plugins import backend_names

        if name in cls.model_fields or name not in backend_names():
            return None
        return _backend_model(name)

    def backend_table(self, name: str) -> dict[str, Any]:
        """The ``[cluster.<name>]`` table as set (validated by that backend's options model), or {}."""
        return dict(self._backend_tables.get(name, {}))

    @field_validator("install", mode="before")
    @classmethod
    def _install_shorthand(cls, value: Any) -> Any:
        # `install = "auto"` is shorthand for `[cluster.install] auto = true` ("refuse": false).
        if isinstance(value, str):
            if value not in ("auto", "refuse"):
                raise ValueError(f'install = "{value}": expected "auto", "refuse" or a [cluster.install] table')
            return {"auto": value == "auto"}
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _counts_as_specs(cls, value: Any) -> Any:
        # `"10.0.0.2" = 2` is shorthand for `"10.0.0.2" = {count = 2}`.
        if isinstance(value, Mapping):
            return {host: {"count": spec} if isinstance(spec, int) and not isinstance(spec, bool) else spec
                    for host, spec in value.items()}
        return value

    @field_validator("partition_timeout")
    @classmethod
    def _timeout_form(cls, value: float | str) -> float | str:
        StallPolicy.parse(value)  # a ValueError names the accepted forms
        return value

    @field_validator("min_workers", mode="before")
    @classmethod
    def _min_workers_not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"min_workers = {str(value).lower()}: expected a count, a fraction in (0, 1] or \"all\"")
        return value

    @field_validator("min_workers")
    @classmethod
    def _min_workers_form(cls, value: int | float | str | None) -> int | float | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"min_workers = {value}: a count must be at least 1")
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"min_workers = {value}: a fraction must be in (0, 1] (a count is written without a point)")
        return value

    @field_validator("scheduler")
    @classmethod
    def _scheduler_is_a_host(cls, value: str | None) -> str | None:
        return None if value is None else host_string(value)

    @field_validator("compiled")
    @classmethod
    def _compiled_is_a_kind(cls, value: str) -> str:
        if value not in compiled_kinds():  # the table of kernel kinds, read now
            raise ValueError(f"compiled = {value!r}: expected a compiled CPU kernel kind, one of "
                             f"{', '.join(repr(k) for k in compiled_kinds())}")
        return value

    @field_validator("backend")
    @classmethod
    def _backend_is_a_name(cls, value: str) -> str:
        # Only the form is checked here: which names exist is the backend registry's business.
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", value):
            raise ValueError(f"invalid backend name {value!r}: expected a registry name such as 'ssh' "
                             "(letters, digits, '_' or '-'; starting with a letter or '_')")
        return value

    @property
    def mode(self) -> Mode:
        """The mode these settings switch on."""
        bits = (self.pool, self.cython, self.cluster_enabled, self.rapids)
        flags = (Mode.POOL, Mode.CYTHON, Mode.CLUSTER, Mode.RAPIDS)
        return Mode(sum(flag for on, flag in zip(bits, flags, strict=True) if on))

    def scheduler_address(self) -> HostAddress | None:
        """The configured scheduler, parsed (its port may be None: then ``dask.scheduler_port``)."""
        return HostAddress.parse(self.scheduler) if self.scheduler else None

    def worker_map(self) -> dict[str, WorkerSpec]:
        """The worker map every layer uses: the configured ``workers``, or, when none is
        configured, this machine (`LOCAL_HOST`) with one slot per core (`local_worker_map`).

        The one place that default lives, so install, cluster start and the work plan agree.
        A backend that places its workers itself implies its own map (`ClusterBackend.implied_worker_map`:
        a Slurm backend's job slots); an unknown backend name raises the registry's `AgiError`.
        """
        from .backend_plugins import load_backend

        backend = load_backend(self.backend)
        implied = backend.implied_worker_map(self, backend.options_of(self))
        return implied if implied is not None else (dict(self.workers) or self.local_worker_map())

    def local_worker_map(self) -> dict[str, WorkerSpec]:
        """The entries of the worker map that name this machine, or `LOCAL_HOST` with one slot
        per core when it names none: the slots of runs without the cluster bit."""
        local = {host: spec for host, spec in self.workers.items() if is_local_host(host) and spec.count}
        return local or {LOCAL_HOST: WorkerSpec(count=os.cpu_count() or 1)}
