"""What a GPU is to agi_core: `Gpu` (one device, or one MIG instance), what a probe found (`GpuProbe`),
the device a worker owns (`WorkerGpu`), and the names shared with the plan and the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU", "GPU_SLOT", "Gpu", "GpuProbe", "NVIDIA_SMI", "NVIDIA_SMI_LIST", "NVIDIA_SMI_TIMEOUT", "SIMULATOR", "WorkerGpu"]


#: the capability a GPU slot offers (``Partition(needs=("gpu",))``, ``prefers=("gpu",)``)
GPU = "gpu"
#: numba's switch for its CUDA simulator: kernels run on the CPU, as Python, with no GPU
SIMULATOR = "NUMBA_ENABLE_CUDASIM"
#: "0" in a worker's environment: the plan gives its slot no GPU, so it runs the CPU kernels even
#: where it could see one (`kernels.select_kernels`)
GPU_SLOT = "AGI_GPU_SLOT"
#: one line per GPU: ``index, name, memory in MiB, uuid``
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits")
#: every GPU and its MIG instances (``GPU 0: NAME (UUID: GPU-…)`` then ``  MIG 1g.10gb Device 0: (UUID: MIG-…)``)
NVIDIA_SMI_LIST = ("nvidia-smi", "-L")
#: seconds nvidia-smi may take: a wedged driver can make it hang for minutes; without persistence
#: mode, the first call loads the driver for every GPU (seconds each on an 8-GPU server)
NVIDIA_SMI_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Gpu:
    """One NVIDIA GPU of a host, as nvidia-smi lists it."""

    index: int
    name: str
    memory_mib: int
    uuid: str = ""  # GPU-… (MIG-… for a MIG instance); "" when nvidia-smi did not say

    def describe(self) -> str:
        """``NVIDIA H100 80GB HBM3, 81559 MiB``"""
        return f"{self.name}, {self.memory_mib} MiB"

    @property
    def device(self) -> str:
        """What ``CUDA_VISIBLE_DEVICES`` names it by: its UUID, else its index."""
        return self.uuid or str(self.index)


@dataclass(frozen=True, slots=True)
class GpuProbe:
    """What nvidia-smi said: the GPUs it listed (MIG instances instead of their GPU) and, when it
    failed or warned, its message (kept for the record and `agi doctor`)."""

    gpus: list[Gpu]
    error: str = ""


@dataclass(frozen=True, slots=True)
class WorkerGpu:
    """The GPU a worker owns: ``device`` is its ``CUDA_VISIBLE_DEVICES``; None when the GPU was
    declared by hand and no device is known (the worker sees what the host shows it)."""

    device: str | None
