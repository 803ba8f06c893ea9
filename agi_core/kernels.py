"""Choose an app's kernel module for a mode: GPU, Cython or plain Python.

An app keeps the same functions in ``kernels.py`` (reference), ``kernels_cy`` (compiled Cython) and
``kernels_gpu.py`` (GPU). The rapids bit prefers the GPU module where a GPU is usable and falls back
to the CPU kernels elsewhere; the record says which one ran. A kernel module that runs its own
threads (OpenMP) may expose ``set_threads(n)``: it is told 1 when the pool bit already runs one
partition per core, and 0 (its own default: every core) otherwise.
"""

from __future__ import annotations

import importlib
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .errors import AgiError
from .gpus import gpu_here, simulated
from .modes import Mode

__all__ = ["KernelChoice", "gpu_visible", "select_kernels"]


@dataclass(frozen=True)
class KernelChoice:
    module: ModuleType
    kind: str  # "python", "cython" or "gpu"
    device: str  # "cpu" or "cuda:0"
    note: str = ""


def gpu_visible() -> bool:
    """A cheap check for an NVIDIA GPU: the device node or ``nvidia-smi`` is present."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module exists but one of its imports is missing: a real error
            raise
        return None


def select_kernels(package: str, mode: Mode) -> KernelChoice:
    """The kernel module of ``package`` that ``mode`` asks for, in this process.

    With the rapids bit: the GPU module where this process may use a GPU (`gpus.gpu_here`: one is
    visible and ``CUDA_VISIBLE_DEVICES`` leaves it to this worker, or numba's CUDA simulator is
    on) and ``kernels_gpu.available()`` agrees; else the CPU kernels, with a note for the record
    that says why (``no GPU on h2: ran the CPU kernels``).
    """
    choice = _select(package, mode)
    set_threads = getattr(choice.module, "set_threads", None)
    if callable(set_threads):  # threads inside a kernel on top of a partition per core would oversubscribe
        set_threads(1 if mode & Mode.POOL else 0)
    return choice


def _select(package: str, mode: Mode) -> KernelChoice:
    note = ""
    if mode & Mode.RAPIDS:
        here, why_not = gpu_here()
        gpu = _optional(f"{package}.kernels_gpu") if here else None
        if gpu is not None and getattr(gpu, "available", lambda: True)():
            return KernelChoice(gpu, "gpu", "cuda:0 (simulator)" if simulated() else "cuda:0", "CUDA simulator" if simulated() else "")
        if here:
            why_not = (f"the GPU of {socket.gethostname()} is not usable by {package}'s GPU kernels "
                       + ("(no kernels_gpu module)" if gpu is None else "(kernels_gpu.available() is false: numba-cuda or cuDF missing?)"))
        note = f"{why_not}: ran the CPU kernels"
    if mode & Mode.CYTHON:
        compiled = _optional(f"{package}.kernels_cy")
        if compiled is None:
            raise AgiError(
                f"mode {mode} has the cython bit, but app package '{package}' has no compiled kernels_cy on this host",
                fix="build them with `agi install APP` (cython bit enabled), or run without the c bit",
            )
        return KernelChoice(compiled, "cython", "cpu", note)
    plain = _optional(f"{package}.kernels") or importlib.import_module(package)
    return KernelChoice(plain, "python", "cpu", note)
