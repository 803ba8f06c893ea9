"""What a GPU is to agi_core: `Gpu` (one device, or one MIG instance), what a probe found (`GpuProbe`),
and the device a worker owns (`WorkerGpu`). The names shared with the plan and the workers are in
`names`: a run of a CPU host needs those, not these classes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Gpu", "GpuProbe", "WorkerGpu"]


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
