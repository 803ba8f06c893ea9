"""What a Slurm job runs and reads: its batch script, its Python, its output folder, the TLS files on the shared filesystem.

`SlurmCluster` takes these methods from `SlurmJobFiles` (a mixin, so that the backend's life
cycle reads on its own in `slurm`): the options of dask-jobqueue's `SLURMJob` for the settings
(`job_options`, `job_script`), where the jobs write and read (`log_directory`, `tls_folder`), the
Python they run (`python`), and the address at which they reach the scheduler (`_bind_host`).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import AgiError
from ..cache.auth import KEY_ENV
from .slurm_gpu import PRELOAD as SLURM_GPU_PRELOAD
from .slurm_jobqueue import slurm_job
from .slurm_names import job_name, job_worker_name

if TYPE_CHECKING:
    from .launched import LaunchedCluster
    from .slurm_options import SlurmSettings
    from .spec import ClusterSpec

__all__ = ["SlurmJobFiles", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or an address) resolves to a loopback address only."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


class SlurmJobFiles:
    """The jobs' side of `SlurmCluster`: what they run, where their files are (see the module's docstring)."""

    # set by `SlurmCluster.__init__` (and `start`, `attach`)
    spec: ClusterSpec
    slurm: SlurmSettings
    address: str
    _tls_id: str
    _credentials: Any
    _security: Any
    _scheduler: LaunchedCluster | None

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
        return slurm_job(scheduler=self.address or placeholder, name=job_worker_name(0), **self.job_options()).job_script()

    def dry_run(self) -> str:
        return f"{self.slurm.jobs} Slurm job(s), each running this batch script:\n{self.job_script()}"
