"""The small tables of the settings schema: ``[cache]``, ``[cluster.share]``, ``[cluster.ssh]``,
``[cluster.install]``, ``[cluster.dask]``, one worker map entry (`WorkerSpec`), and the strict base
every table shares (an unknown key is an error). `agi_core.settings.schema` holds ``[cluster]``.
"""

# No `from __future__ import annotations` here: pydantic would compile every field's annotation from
# its string (typing.ForwardRef) at each start of `agi`; these models name only what is imported.

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)

from ..base.factories import empty_list
from ..base.hosts import HostAddress
from .secret_refs import Secret

__all__ = ["CacheSettings", "DaskSettings", "HostKey", "InstallSettings", "ShareSettings", "SshSettings", "StrictTable", "WorkerSpec",
           "host_string"]


def host_string(value: str) -> str:
    """A host string as written (less surrounding blanks), once `HostAddress.parse` accepts it.

    Raises `HostAddressError` (a `ValueError`): pydantic reports it against the key that held the
    value, and `settings_errors.format_validation` adds the file name and the accepted forms.
    """
    HostAddress.parse(value)
    return value.strip()


#: A worker-map key: ``HOST``, ``USER@HOST``, ``HOST:SSH_PORT`` or ``[IPv6]:SSH_PORT``.
HostKey = Annotated[str, AfterValidator(host_string)]


class StrictTable(BaseModel):
    """A settings table: an unknown key is an error (a typo is never ignored), and so is a bad assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)


class CacheSettings(StrictTable):
    """The ``[cache]`` table: how partition results are reused across runs (docs/cache.md)."""

    inputs: Literal["stamp", "hash"] = Field(
        default="stamp", description='how a declared input file (Partition(inputs=...)) enters its partition\'s key: "stamp" = '
        'size and modification time; "hash" = SHA-256 of the content (memoised on the share, so an unchanged file is read once)')
    audit: float = Field(default=0.0, ge=0.0, le=1.0, description="share of the cache hits recomputed and compared with the "
                         "cached result (at least one when > 0); a mismatch is reported and the fresh result is used")
    require: StrictBool = Field(default=False, description="a result that could not be stored in the cache (a full or read-only "
                          "share) fails the run instead of a warning; `agi run --require-cache` for one run")


class ShareSettings(StrictTable):
    """The ``[cluster.share]`` table: who besides you may read and write what agi keeps on the share (docs/security.md)."""

    group_access: Literal["none", "read", "write"] = Field(
        default="read", description='what your group may do with the folders and files agi creates on the share: "read" '
        '(folders 0750, files 0640), "write" (0770, 0660: a lab group sharing one cache and its runs; group-writable '
        'folders are then loaded from too) or "none" (0700, 0600)')


class WorkerSpec(StrictTable):
    """One host of the worker map: how many worker processes (slots) it runs, and what they offer."""

    count: int = Field(ge=0, description="worker processes on this host, one slot each")
    capacity: float = Field(default=1.0, gt=0, description="relative speed of one slot")
    capabilities: tuple[str, ...] = Field(default=(), description='e.g. ["gpu"]: every worker of this host offers them '
                                          '(declared by hand: hosts that cannot be probed, a simulated GPU)')
    gpus: int | None = Field(default=None, ge=0, description="NVIDIA GPUs of this host; None: as `agi install` / `agi doctor` "
                             "found them (nvidia-smi). Worker k < gpus owns GPU k (CUDA_VISIBLE_DEVICES=k)")
    share_gpus: StrictBool = Field(default=False, description='with capabilities = ["gpu"]: workers may share a GPU (more '
                                   "workers than GPUs, or a host never probed: no GPU pinned); false: worker k owns GPU k")
    env: dict[str, str] = Field(default_factory=dict, description="environment of this host's worker processes, "
                                'e.g. {NUMBA_ENABLE_CUDASIM = "1"} for a simulated GPU')

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [name for name in env if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
        if bad:
            raise ValueError(f"invalid environment variable name(s) {bad}: letters, digits and '_', not starting with a digit")
        return env


class SshSettings(StrictTable):
    user: str | None = Field(default=None, description="the SSH user (default: the manager's, or ~/.ssh/config's)")
    key: str | None = Field(default=None, description="client private key")
    key_passphrase: Secret | None = Field(
        default=None, description='decrypts an encrypted client key: {env = "NAME"} or {file = "PATH"} (0600), never '
        "the passphrase itself (agi_core.settings.secret_refs)")
    known_hosts: str = "~/.ssh/known_hosts"
    port: int = Field(default=22, ge=1, le=65535, description="the SSH port of every host")
    connect_timeout: float = Field(default=10.0, gt=0)
    command_timeout: float = Field(default=600.0, gt=0)


class InstallSettings(StrictTable):
    python: str | None = Field(default=None, description='Python version for worker venvs, e.g. "3.11"')
    root: str = Field(default="~/.agi", description="agi's folder on each host: uv, wheelhouse, venvs")
    venv: str = Field(default="{root}/venvs/{app}", description="the app's venv on each host")
    concurrency: int = Field(default=32, ge=1, description="hosts installed at the same time")
    source: Literal["wheelhouse", "index"] = Field(default="wheelhouse", description="wheelhouse: no internet needed on hosts")
    index_url: str | None = None
    find_links: list[str] = Field(default_factory=empty_list, description="folders of extra wheels (e.g. private packages) the "
                                  "manager may lock and download from, beside the package index")
    auto: StrictBool = Field(default=False, description="a worker that joins a run with other agi_core code than the "
                             "manager's is installed first (as `agi install` does for its host) and then joins; false: "
                             "it is refused. `[cluster] install = \"auto\"` is short for this")

    def venv_path(self, app: str) -> str:
        return self.venv.format(root=self.root.rstrip("/"), app=app)


class DaskSettings(StrictTable):
    """Ports, timeouts and knobs of the Dask processes agi starts (see docs/cluster.md)."""

    scheduler_port: int = Field(default=8786, ge=0, le=65535, description="used when `scheduler` names no port")
    dashboard_port: int | None = Field(default=8787, ge=0, le=65535, description="the scheduler's dashboard port (from Python, None: no dashboard)")
    worker_ports: str | None = Field(default=None, description='e.g. "9000:9099"; None: any free port')
    nanny_ports: str | None = Field(default=None, description='e.g. "9100:9199"; None: any free port')
    connect_timeout: float = Field(default=10.0, gt=0, description="seconds: comm connect timeout")
    tcp_timeout: float = Field(default=30.0, ge=11, description="seconds until a silent peer counts as gone (>= 11)")
    start_timeout: float = Field(default=60.0, gt=0, description="seconds to wait for every worker to join")
    local_directory: str = Field(default="/tmp/agi-dask", description="workers' scratch folder on each host")
    retries: int = Field(default=1, ge=0, description="Dask retries of a task whose worker failed it")
    max_tasks_per_slot: int = Field(default=16, ge=1, description="tiny partitions are batched into at most this many tasks per slot")
    profile: StrictBool = Field(default=False, description="Dask's statistical profiler in workers (the dashboard's "
                          "Profile page); it samples every 10 ms and slowed NumPy kernels by about 30% here")
    malloc_trim_threshold: int | None = Field(
        default=None, ge=0,
        description="MALLOC_TRIM_THRESHOLD_ for worker processes; None keeps glibc's adaptive default. Dask's own "
        "default (65536) returns memory sooner but makes NumPy code with large temporaries several times slower")
