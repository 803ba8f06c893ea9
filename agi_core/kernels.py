"""Choose an app's kernel module for a mode: GPU, Cython or plain Python.

An app keeps the same functions in ``kernels.py`` (reference), ``kernels_cy`` (compiled Cython) and
``kernels_gpu.py`` (GPU). The rapids bit prefers the GPU module where a GPU is usable and falls back
to the CPU kernels elsewhere; the record says which one ran. A kernel module that runs its own
threads (OpenMP) may expose ``set_threads(n)``: it is told 1 when the pool bit already runs one
partition per core, and 0 (its own default: every core) otherwise.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .errors import AgiError
from .gpus import GPU_SLOT, gpu_here, simulated
from .modes import Mode

__all__ = ["KernelChoice", "gpu_reason", "gpu_reason_in_child", "gpu_visible", "select_kernels"]


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


def select_kernels(package: str, mode: Mode, *, gpu_check: str = "here", python: str | None = None) -> KernelChoice:
    """The kernel module of ``package`` that ``mode`` asks for, in this process.

    With the rapids bit: the GPU module where this process may use a GPU (`gpus.gpu_here`: one is
    visible and ``CUDA_VISIBLE_DEVICES`` leaves it to this worker, or numba's CUDA simulator is
    on; and the plan gave its slot a GPU: `gpus.GPU_SLOT`) and the module says it can run here
    (``kernels_gpu.why_unavailable()`` is empty, or ``available()`` is true); else the CPU
    kernels, with a note for the record that says why (``no GPU on h2: ran the CPU kernels``).

    ``gpu_check="child"``: ask whether the GPU kernels can run in a child Python instead
    (`gpu_reason_in_child`; ``python``: the workers' interpreter): a manager that starts worker
    processes must not initialise CUDA itself (CUDA refuses to run in a child forked after ``cuInit``).
    """
    choice = _select(package, mode, gpu_check, python)
    set_threads = getattr(choice.module, "set_threads", None)
    if callable(set_threads):  # threads inside a kernel on top of a partition per core would oversubscribe
        set_threads(1 if mode & Mode.POOL else 0)
    return choice


def gpu_reason(module: ModuleType) -> str:
    """Why a GPU kernel module cannot run here ("" when it can): its ``why_unavailable()`` (the
    error numba.cuda or cuDF raised), else what its ``available()`` says."""
    why = getattr(module, "why_unavailable", None)
    if callable(why):
        return str(why() or "")
    return "" if getattr(module, "available", lambda: True)() else "kernels_gpu.available() is false: numba-cuda or cuDF missing?"


#: Run as ``python -c``: prints why ``sys.argv[2]``'s GPU kernels cannot run (one JSON string, "" when they can).
_CHILD_CHECK = r"""
import importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
from agi_core.kernels import gpu_reason
try:
    module = importlib.import_module(sys.argv[2] + ".kernels_gpu")
    print(json.dumps(gpu_reason(module)))
except ModuleNotFoundError as exc:
    print(json.dumps("no kernels_gpu module" if exc.name == sys.argv[2] + ".kernels_gpu" else f"{type(exc).__name__}: {exc}"))
"""


def gpu_reason_in_child(package: str, python: str | None = None, timeout: float = 180.0) -> str:
    """`gpu_reason` for ``package``'s GPU kernels, asked of a child ``python`` with this process's
    ``sys.path`` (less its own installation's folders when ``python`` is another interpreter, an
    app's environment): this process loads no GPU library and never calls ``cuInit``."""
    paths = sys.path
    if python and os.path.abspath(python) != os.path.abspath(sys.executable):
        paths = [p for p in sys.path if p and not p.startswith((sys.prefix, sys.base_prefix))]
    try:
        done = subprocess.run([python or sys.executable, "-c", _CHILD_CHECK, json.dumps(paths), package],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the check of the GPU kernels in a child Python did not answer ({type(exc).__name__}: {exc})"
    try:
        return str(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return f"the check of the GPU kernels in a child Python failed: {' '.join(done.stderr.split())[-300:]}"


def _select(package: str, mode: Mode, gpu_check: str = "here", python: str | None = None) -> KernelChoice:
    note = ""
    if mode & Mode.RAPIDS:
        here, why_not = gpu_here()
        if here and os.environ.get(GPU_SLOT) == "0":
            here, why_not = False, f"the plan gives this worker no GPU on {socket.gethostname()}"
        gpu = _optional(f"{package}.kernels_gpu") if here else None
        reason = "" if gpu is None else gpu_reason_in_child(package, python) if gpu_check == "child" else gpu_reason(gpu)
        if gpu is not None and not reason:
            return KernelChoice(gpu, "gpu", "cuda:0 (simulator)" if simulated() else "cuda:0", "CUDA simulator" if simulated() else "")
        if here:
            why_not = (f"the GPU of {socket.gethostname()} is not usable by {package}'s GPU kernels "
                       + ("(no kernels_gpu module)" if gpu is None else f"({reason})"))
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
