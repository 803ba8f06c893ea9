"""Which GPUs a host has, which worker owns which, and whether numba.cuda and cuDF work there.

A host's GPUs are what ``nvidia-smi`` lists (run with a timeout: a missing, broken or hanging
tool means none). Whether numba.cuda can use them and whether cuDF imports is asked of a child
Python, and only where there is a GPU or numba's CUDA simulator is on: a process on a host
without a GPU never loads a GPU library. `agi install` and `agi doctor` probe every host and keep
what they found (`remember_gpus`); the work plan and the cluster read it back (`gpus_of`), so
both agree on which worker owns which GPU (`gpu_workers`): worker k of a host with n GPUs owns
GPU k when k < n (its own ``CUDA_VISIBLE_DEVICES``, as dask-cuda does) and is a CPU worker
otherwise. A host may also declare ``capabilities = ["gpu"]`` (every worker owns a GPU: a host
that cannot be probed, or a simulated GPU with ``NUMBA_ENABLE_CUDASIM = "1"`` in its ``env``) or
``gpus = N``.

>>> parse_gpus("0, NVIDIA H100 80GB HBM3, 81559\\n1, NVIDIA H100 80GB HBM3, 81559\\n")[1]
Gpu(index=1, name='NVIDIA H100 80GB HBM3', memory_mib=81559)
>>> from agi_core.settings import WorkerSpec
>>> gpu_workers(WorkerSpec(count=3), [Gpu(0, "A100", 40960), Gpu(1, "A100", 40960)])
[WorkerGpu(device='0'), WorkerGpu(device='1'), None]
>>> gpu_workers(WorkerSpec(count=2, capabilities=["gpu"]), [])
[WorkerGpu(device=None), WorkerGpu(device=None)]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_text_atomic
from .hosts import HostAddress, is_local_host
from .paths import state_dir

if TYPE_CHECKING:
    from .settings import WorkerSpec

__all__ = ["GPU", "SIMULATOR", "Gpu", "WorkerGpu", "gpu_here", "gpu_workers", "gpus_of", "library_probe", "local_gpus",
           "parse_gpus", "remember_gpus", "remembered_gpus", "worker_env", "worker_gpu_facts"]

#: the capability a GPU slot offers (``Partition(needs=("gpu",))``, ``prefers=("gpu",)``)
GPU = "gpu"
#: numba's switch for its CUDA simulator: kernels run on the CPU, as Python, with no GPU
SIMULATOR = "NUMBA_ENABLE_CUDASIM"
#: one line per GPU: ``index, name, memory in MiB``
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits")
#: seconds nvidia-smi may take: a wedged driver can make it hang for minutes
NVIDIA_SMI_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Gpu:
    """One NVIDIA GPU of a host, as nvidia-smi lists it."""

    index: int
    name: str
    memory_mib: int

    def describe(self) -> str:
        """``NVIDIA H100 80GB HBM3, 81559 MiB``"""
        return f"{self.name}, {self.memory_mib} MiB"


@dataclass(frozen=True, slots=True)
class WorkerGpu:
    """The GPU a worker owns: ``device`` is its ``CUDA_VISIBLE_DEVICES``; None when the GPU was
    declared by hand and no device is known (the worker sees what the host shows it)."""

    device: str | None


def parse_gpus(text: str) -> list[Gpu]:
    """The GPUs in ``nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits``
    output; lines that do not read as one are ignored (``[N/A]`` memory counts as 0)."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        memory = parts[-1].split()[0] if parts[-1] else ""
        gpus.append(Gpu(int(parts[0]), ", ".join(parts[1:-1]), int(memory) if memory.isdigit() else 0))
    return gpus


def local_gpus(timeout: float = NVIDIA_SMI_TIMEOUT) -> list[Gpu]:
    """This machine's GPUs (nvidia-smi, at most ``timeout`` seconds); [] when there is none or the
    tool fails. Imports no GPU library."""
    if shutil.which(NVIDIA_SMI[0]) is None:
        return []
    try:
        done = subprocess.run(NVIDIA_SMI, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_gpus(done.stdout) if done.returncode == 0 else []


def simulated(environ: Mapping[str, str] = os.environ) -> bool:
    """True when numba's CUDA simulator is on in ``environ`` (``NUMBA_ENABLE_CUDASIM=1``)."""
    return environ.get(SIMULATOR, "0") not in ("", "0")


# -- which worker owns which GPU ------------------------------------------------------------


def gpu_workers(spec: WorkerSpec, gpus: Sequence[Gpu]) -> list[WorkerGpu | None]:
    """For each of the ``spec.count`` workers of a host with ``gpus`` (probed), the GPU it owns,
    or None for a CPU worker.

    Declared ``capabilities = ["gpu"]``: every worker owns one (GPU k mod n when the host's GPUs
    are known, else whatever the host shows it). Declared ``gpus = N``: workers k < N own GPU k.
    Otherwise workers k < len(gpus) own the k-th GPU probed.
    """
    if GPU in spec.capabilities:
        return [WorkerGpu(str(gpus[k % len(gpus)].index) if gpus else None) for k in range(spec.count)]
    if spec.gpus is not None:
        return [WorkerGpu(str(k)) if k < spec.gpus else None for k in range(spec.count)]
    return [WorkerGpu(str(gpus[k].index)) if k < len(gpus) else None for k in range(spec.count)]


def worker_env(spec: WorkerSpec, gpu: WorkerGpu | None, host_gpus: int) -> dict[str, str]:
    """The environment of one worker process: the host's ``env`` setting, and its GPU: its own
    ``CUDA_VISIBLE_DEVICES``, or an empty one for a CPU worker on a host whose GPUs other workers own.

    >>> from agi_core.settings import WorkerSpec
    >>> worker_env(WorkerSpec(count=2), None, host_gpus=1)
    {'CUDA_VISIBLE_DEVICES': ''}
    """
    env = dict(spec.env)
    if gpu is not None and gpu.device is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu.device
    elif gpu is None and (host_gpus or spec.gpus):
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def gpu_here(environ: Mapping[str, str] = os.environ, *, host: str | None = None) -> tuple[bool, str]:
    """Whether this process may run GPU kernels: ``CUDA_VISIBLE_DEVICES`` does not hide every GPU
    from it, and a GPU is visible or numba's simulator is on. When not, the reason, naming the
    host, for the record.

    >>> gpu_here({"NUMBA_ENABLE_CUDASIM": "1"}, host="h1")
    (True, '')
    >>> gpu_here({"NUMBA_ENABLE_CUDASIM": "1", "CUDA_VISIBLE_DEVICES": ""}, host="h1")[0]
    False
    """
    host = host or socket.gethostname()
    if environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False, f"no GPU on {host} for this worker (CUDA_VISIBLE_DEVICES is empty: the host's GPUs belong to other workers)"
    if simulated(environ):
        return True, ""
    if os.path.exists("/dev/nvidiactl") or shutil.which(NVIDIA_SMI[0]) is not None:
        return True, ""
    return False, f"no GPU on {host}"


# -- what install and doctor found, kept for the plan and the cluster ------------------------


def _facts_file(host: str) -> Path:
    name = HostAddress.parse(host).host
    return state_dir("hosts", re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".json")


def remember_gpus(host: str, gpus: Sequence[Gpu]) -> None:
    """Keep what a probe of ``host`` (a worker-map key) found, for later plans and clusters."""
    path = _facts_file(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"schema": "agi.host-gpus.v1", "host": host, "gpus": [asdict(g) for g in gpus]}))


def remembered_gpus(host: str) -> list[Gpu] | None:
    """What the last probe of ``host`` found; None when it was never probed (or the file is unreadable)."""
    try:
        data = json.loads(_facts_file(host).read_text())
        return [Gpu(int(g["index"]), str(g["name"]), int(g["memory_mib"])) for g in data["gpus"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def gpus_of(hosts: Sequence[str] | Mapping[str, Any]) -> dict[str, list[Gpu]]:
    """Host → its GPUs: this machine's probed now, other hosts' as `agi install` / `agi doctor` last
    found them (none when never probed: declare ``capabilities`` or ``gpus`` for such hosts)."""
    here: list[Gpu] | None = None
    found = {}
    for host in hosts:
        if is_local_host(host):
            here = local_gpus() if here is None else here
            found[host] = here
        else:
            found[host] = remembered_gpus(host) or []
    return found


# -- numba.cuda and cuDF, asked of a child process -------------------------------------------

#: Run as ``python -c``: prints one JSON line. It imports numba and cudf, so it runs only where
#: a GPU is visible or the simulator is on, and in a process of its own.
LIBRARY_PROBE = r"""
import importlib.util, json
out = {"numba_cuda": None, "cudf": None}
if importlib.util.find_spec("numba") is not None:
    try:
        from numba import cuda
        out["numba_cuda"] = bool(cuda.is_available())
    except Exception as exc:
        out["numba_cuda"] = False; out["numba_error"] = f"{type(exc).__name__}: {exc}"[:300]
if importlib.util.find_spec("cudf") is not None:
    try:
        import cudf
        out["cudf"] = True; out["cudf_version"] = cudf.__version__
    except Exception as exc:
        out["cudf"] = False; out["cudf_error"] = f"{type(exc).__name__}: {exc}"[:300]
print(json.dumps(out))
"""


def library_probe(python: str = sys.executable, environ: Mapping[str, str] | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """Whether numba.cuda can use a GPU and whether cuDF imports, asked of a child ``python``:
    ``{"numba_cuda": bool | None, "cudf": bool | None, ...}`` (None: not installed)."""
    try:
        done = subprocess.run([python, "-c", LIBRARY_PROBE], capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(environ) if environ is not None else None)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {"numba_cuda": None, "cudf": None, "error": "the probe did not answer"}


def _visible(gpus: list[Gpu], devices: str | None) -> list[Gpu]:
    if devices is None:
        return gpus
    wanted = [d.strip() for d in devices.split(",") if d.strip()]
    return [g for g in gpus if str(g.index) in wanted]


def worker_gpu_facts() -> dict[str, Any]:
    """This worker process's GPU facts, for the run record (run on each Dask worker): the GPUs it
    sees (``CUDA_VISIBLE_DEVICES`` applied), whether they are simulated, and whether numba.cuda
    and cuDF work (asked of a child, only where there is a GPU or the simulator)."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = _visible(local_gpus(), devices)
    sim = simulated()
    facts: dict[str, Any] = {"gpu_models": [g.describe() for g in gpus], "cuda_visible_devices": devices, "gpu_simulated": sim}
    if gpus or sim:
        probe = library_probe()
        facts.update(numba_cuda=probe.get("numba_cuda"), cudf=probe.get("cudf"))
    return facts
