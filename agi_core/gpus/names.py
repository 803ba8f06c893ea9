"""The names GPU code shares with the plan and the workers: a capability, environment variables, the
nvidia-smi commands. Apart from the classes of `model`, which a run of a CPU host never makes
(each dataclass costs its generated methods' compilation at every start of ``agi``).
"""

from __future__ import annotations

__all__ = ["GPU", "GPU_SLOT", "NVIDIA_SMI", "NVIDIA_SMI_LIST", "NVIDIA_SMI_TIMEOUT", "SIMULATOR"]

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
