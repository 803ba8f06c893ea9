"""Which GPUs a host has, which worker owns which, and whether numba.cuda and cuDF work there.

A host's GPUs are what ``nvidia-smi`` lists (run with a timeout: a missing, broken or hanging
tool means none). Whether numba.cuda can use them and whether cuDF imports is asked of a child
Python, and only where there is a GPU or numba's CUDA simulator is on: a process on a host
without a GPU never loads a GPU library. `agi install` and `agi doctor` probe every host and keep
what they found (`remember_gpus`); the work plan and the cluster read it back (`gpus_of`), so
both agree on which worker owns which GPU (`gpu_workers`): worker k of a host with n GPUs owns
GPU k when k < n (its own ``CUDA_VISIBLE_DEVICES``, as dask-cuda does) and is a CPU worker
otherwise. A host may also declare ``capabilities = ["gpu"]`` (every worker owns a GPU of its
own: a host that cannot be probed; declared GPUs count like probed ones, so worker k owns GPU k)
or ``gpus = N``; ``share_gpus = true`` says that workers sharing a GPU is intended. A simulated
GPU (``NUMBA_ENABLE_CUDASIM = "1"`` in the host's ``env``) has no device to pin.

GPUs are named by UUID where nvidia-smi gives one (``GPU-…``, or ``MIG-…`` for each MIG instance,
which CUDA shows one per process): indices can name another card where CUDA's device order is not
nvidia-smi's, and a MIG instance has no index.

>>> from agi_core.gpus import Gpu, gpu_workers, parse_gpus
>>> parse_gpus("0, NVIDIA H100 80GB HBM3, 81559\\n1, NVIDIA H100 80GB HBM3, 81559\\n")[1]
Gpu(index=1, name='NVIDIA H100 80GB HBM3', memory_mib=81559, uuid='')
>>> from agi_core.settings import WorkerSpec
>>> gpu_workers(WorkerSpec(count=3), [Gpu(0, "A100", 40960), Gpu(1, "A100", 40960)])
[WorkerGpu(device='0'), WorkerGpu(device='1'), None]
>>> gpu_workers(WorkerSpec(count=2, capabilities=["gpu"]), [])
[WorkerGpu(device='0'), WorkerGpu(device='1')]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .facts import gpus_of, remember_gpus, remembered_gpus
    from .libraries import LIBRARY_PROBE, gpu_libraries_unusable, library_probe, worker_gpu_facts
    from .model import Gpu, GpuProbe, WorkerGpu
    from .names import GPU, GPU_SLOT, NVIDIA_SMI, NVIDIA_SMI_LIST, NVIDIA_SMI_TIMEOUT, SIMULATOR
    from .owners import bind_in_job, gpu_here, gpu_workers, simulated, worker_env
    from .probe import local_gpus, parse_gpu_list, parse_gpus, probe_gpus, with_mig

__all__ = ["GPU", "GPU_SLOT", "LIBRARY_PROBE", "NVIDIA_SMI", "NVIDIA_SMI_LIST", "NVIDIA_SMI_TIMEOUT", "SIMULATOR", "Gpu",
           "GpuProbe", "WorkerGpu", "bind_in_job", "gpu_here", "gpu_libraries_unusable", "gpu_workers", "gpus_of",
           "library_probe", "local_gpus", "parse_gpu_list", "parse_gpus", "probe_gpus", "remember_gpus", "remembered_gpus",
           "simulated", "with_mig", "worker_env", "worker_gpu_facts"]

#: name -> the submodule that defines it. A name is imported when first used: every run's plan asks
#: `gpu_workers` (owners, names; model only where a host has GPUs), while probing, remembered facts
#: and the library check (and what they import: atomic writes, subprocess) are for runs and
#: installs that look for GPUs
_WHERE = {
    **dict.fromkeys(("gpus_of", "remember_gpus", "remembered_gpus"), ".facts"),
    **dict.fromkeys(("LIBRARY_PROBE", "gpu_libraries_unusable", "library_probe", "worker_gpu_facts"), ".libraries"),
    **dict.fromkeys(("Gpu", "GpuProbe", "WorkerGpu"), ".model"),
    **dict.fromkeys(("GPU", "GPU_SLOT", "NVIDIA_SMI", "NVIDIA_SMI_LIST", "NVIDIA_SMI_TIMEOUT", "SIMULATOR"), ".names"),
    **dict.fromkeys(("bind_in_job", "gpu_here", "gpu_workers", "simulated", "worker_env"), ".owners"),
    **dict.fromkeys(("local_gpus", "parse_gpu_list", "parse_gpus", "probe_gpus", "with_mig"), ".probe"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value  # once found, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
