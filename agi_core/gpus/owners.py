"""Which worker owns which GPU (`gpu_workers`), the environment that pins it (`worker_env`,
`bind_in_job`), and whether this process may use a GPU (`gpu_here`, `simulated`).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..base.errors import SettingsError
from .names import GPU, GPU_SLOT, NVIDIA_SMI, SIMULATOR

if TYPE_CHECKING:
    from ..settings import WorkerSpec
    from .model import Gpu, WorkerGpu

__all__ = ["bind_in_job", "gpu_here", "gpu_workers", "simulated", "worker_env"]


def simulated(environ: Mapping[str, str] = os.environ) -> bool:
    """True when numba's CUDA simulator is on in ``environ`` (``NUMBA_ENABLE_CUDASIM=1``)."""
    return environ.get(SIMULATOR, "0") not in ("", "0")


def gpu_workers(spec: WorkerSpec, gpus: Sequence[Gpu], host: str = "") -> list[WorkerGpu | None]:
    """For each of the ``spec.count`` workers of a host with ``gpus`` (probed), the GPU it owns,
    or None for a CPU worker.

    Declared ``capabilities = ["gpu"]``: every worker owns a GPU of its own, GPU k (a count, as
    if probed), or the k-th probed one; more workers than probed GPUs is an error unless
    ``share_gpus`` (then GPU k mod n). A simulated GPU, or shared GPUs of a host never probed: no
    device to pin (the worker sees what the host shows it). Declared ``gpus = N``: workers k < N
    own GPU k. Otherwise workers k < len(gpus) own the k-th GPU probed. ``host``: for the error.
    """
    if GPU not in spec.capabilities and spec.gpus is None and not gpus:
        return [None] * spec.count  # a CPU host: the GPU classes (`model`) stay unloaded
    from .model import WorkerGpu

    if GPU in spec.capabilities:
        if gpus and spec.count > len(gpus) and not spec.share_gpus:
            where = f"host {host}" if host else "a host"
            raise SettingsError(f'{where} declares capabilities = ["gpu"] for {spec.count} workers but has {len(gpus)} GPU'
                                f'{"s" if len(gpus) > 1 else ""} (nvidia-smi): {spec.count - len(gpus)} would share one',
                                fix=f"set count = {len(gpus)} for {host or 'that host'} in [cluster.workers], or "
                                    "share_gpus = true there if sharing a GPU between workers is intended")
        if gpus:
            return [WorkerGpu(gpus[k % len(gpus)].device) for k in range(spec.count)]
        if spec.share_gpus or simulated(spec.env):
            return [WorkerGpu(None) for _ in range(spec.count)]
        return [WorkerGpu(str(k)) for k in range(spec.count)]
    if spec.gpus is not None:
        return [WorkerGpu(gpus[k].device if k < len(gpus) else str(k)) if k < spec.gpus else None for k in range(spec.count)]
    return [WorkerGpu(gpus[k].device) if k < len(gpus) else None for k in range(spec.count)]


def worker_env(spec: WorkerSpec, gpu: WorkerGpu | None, host_gpus: int) -> dict[str, str]:
    """The environment of one worker process: the host's ``env`` setting, and its GPU: its own
    ``CUDA_VISIBLE_DEVICES`` (CUDA then counts devices in nvidia-smi's order, ``PCI_BUS_ID``), or
    for a CPU worker an empty one where other workers own the host's GPUs, and `GPU_SLOT` = 0: it
    runs the CPU kernels even where it could see a GPU, as the plan expects.

    >>> from agi_core.settings import WorkerSpec
    >>> worker_env(WorkerSpec(count=2), None, host_gpus=1)
    {'CUDA_VISIBLE_DEVICES': '', 'AGI_GPU_SLOT': '0'}
    """
    env = dict(spec.env)
    if gpu is not None and gpu.device is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu.device
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    elif gpu is None and (host_gpus or spec.gpus):
        env["CUDA_VISIBLE_DEVICES"] = ""
    if gpu is None:
        env[GPU_SLOT] = "0"
    return env


def bind_in_job(visible: str | None, index: int) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` of worker ``index`` of a batch job (Slurm) that was given the
    GPUs ``visible`` (its inherited ``CUDA_VISIBLE_DEVICES``: indices, ``GPU-``/``MIG-`` UUIDs):
    the list rotated so that the worker's own GPU comes first, as dask-cuda does; CUDA device 0 is
    then its own, and peer access to the others still works. None when the job has no list (the
    worker sees what the node shows it).

    >>> bind_in_job("4,5,6", 1)
    '5,6,4'
    >>> bind_in_job("GPU-aa,MIG-bb", 2)
    'GPU-aa,MIG-bb'
    """
    devices = [d.strip() for d in (visible or "").split(",") if d.strip()]
    if not devices:
        return None
    k = index % len(devices)
    return ",".join(devices[k:] + devices[:k])


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
