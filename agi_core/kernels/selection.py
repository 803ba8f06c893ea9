"""Choose an app's kernel module for a run's shape: the first of its kernel kinds that can run here.

An app keeps the same functions in one module per kernel kind (`kernel_kinds.KINDS`: ``kernels.py``,
``kernels_cy``, ``kernels_numba.py``, ``kernels_gpu.py``). The rapids bit prefers the GPU module where
a GPU is usable and falls back to the CPU kernels elsewhere; the record says which one ran. A kernel module that runs its own
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

from ..base.errors import AgiError
from ..base.modes import Mode
from ..gpus import GPU_SLOT, gpu_here, simulated
from .kinds import CPU_FALLBACK, KernelKind, compiled_kinds, kind
from .shape import ExecutionShape

__all__ = ["KernelChoice", "gpu_reason", "gpu_reason_in_child", "gpu_visible", "select_kernels"]


@dataclass(frozen=True)
class KernelChoice:
    module: ModuleType
    kind: str  # a kernel kind's name (`kernel_kinds`): "python", "cython", "numba", "gpu", …
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


def select_kernels(package: str, shape: ExecutionShape | Mode, *, gpu_check: str = "here", python: str | None = None) -> KernelChoice:
    """The kernel module of ``package`` that ``shape`` asks for, in this process: the first of
    ``shape.kernels`` (`kernel_kinds`, best first) that can run here.

    A GPU kind runs where this process may use a GPU (`gpus.gpu_here`: one is visible and
    ``CUDA_VISIBLE_DEVICES`` leaves it to this worker, or numba's CUDA simulator is on; and the plan
    gave its slot a GPU: `gpus.GPU_SLOT`) and its module says it can run here
    (``why_unavailable()`` is empty, or ``available()`` is true); else the next kind runs, with a
    note for the record that says why (``no GPU on h2: ran the CPU kernels``). A kind without
    ``fallback`` (compiled CPU kernels) that is missing is an error.

    ``gpu_check="child"``: ask whether the GPU kernels can run in a child Python instead
    (`gpu_reason_in_child`; ``python``: the workers' interpreter): a manager that starts worker
    processes must not initialise CUDA itself (CUDA refuses to run in a child forked after ``cuInit``).
    A `Mode` stands for its shape with the default settings (`ExecutionShape.of`).
    """
    if not isinstance(shape, ExecutionShape):
        shape = ExecutionShape.of(shape)
    return _select(package, shape, gpu_check, python)


def gpu_reason(module: ModuleType) -> str:
    """Why a GPU kernel module cannot run here ("" when it can): its ``why_unavailable()`` (the
    error numba.cuda or cuDF raised), else what its ``available()`` says."""
    why = getattr(module, "why_unavailable", None)
    if callable(why):
        return str(why() or "")
    return "" if getattr(module, "available", lambda: True)() else f"{module.__name__}.available() is false: a library it needs is missing?"


#: Run as ``python -c``: prints why module ``sys.argv[3]`` of ``sys.argv[2]`` cannot run (one JSON string, "" when it can).
_CHILD_CHECK = r"""
import importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
from agi_core.kernels.selection import gpu_reason
try:
    module = importlib.import_module(sys.argv[2] + "." + sys.argv[3])
    print(json.dumps(gpu_reason(module)))
except ModuleNotFoundError as exc:
    print(json.dumps(f"no {sys.argv[3]} module" if exc.name == sys.argv[2] + "." + sys.argv[3] else f"{type(exc).__name__}: {exc}"))
"""


def gpu_reason_in_child(package: str, python: str | None = None, timeout: float = 180.0, module: str = "kernels_gpu") -> str:
    """`gpu_reason` for ``package``'s GPU kernels (its ``module``: a GPU kind's, `kernel_kinds`), asked of a child ``python`` with this process's
    ``sys.path`` (less its own installation's folders when ``python`` is another interpreter, an
    app's environment): this process loads no GPU library and never calls ``cuInit``."""
    paths = sys.path
    if python and os.path.abspath(python) != os.path.abspath(sys.executable):
        paths = [p for p in sys.path if p and not p.startswith((sys.prefix, sys.base_prefix))]
    try:
        done = subprocess.run([python or sys.executable, "-c", _CHILD_CHECK, json.dumps(paths), package, module],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the check of the GPU kernels in a child Python did not answer ({type(exc).__name__}: {exc})"
    try:
        return str(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return f"the check of the GPU kernels in a child Python failed: {' '.join(done.stderr.split())[-300:]}"


def _select(package: str, shape: ExecutionShape, gpu_check: str = "here", python: str | None = None) -> KernelChoice:
    note = ""
    for name in shape.kernels:
        row = kind(name)
        if row.gpu:
            choice, why_not = _gpu_choice(package, row, shape, gpu_check, python)
            if choice is not None:
                return choice
            note = f"{why_not}: ran the CPU kernels"
            continue
        module = _optional(f"{package}.{row.module}")
        if module is None and name == CPU_FALLBACK:
            module = importlib.import_module(package)  # an app may keep its reference kernels in the package
        reason = "" if module is None else gpu_reason(module)
        if module is not None and not reason:
            _set_threads(module, shape)
            if row.build == "warm" and callable(getattr(module, "warm", None)):
                module.warm()  # a JIT's compile (or its disk cache's load) here, not inside the first partition
            return KernelChoice(module, name, row.device, note)
        if not row.fallback:
            what = f"no {row.module} module on this host" if module is None else f"{row.module} cannot run here ({reason})"
            raise AgiError(
                f"the run asks for the {name} kernels (mode bit {row.letter or '-'}), but app package '{package}' has {what}",
                fix=_missing_fix(row),
            )
    raise AgiError(f"no kernels of app package '{package}' can run here (tried {', '.join(shape.kernels)})",
                   fix="give the app a kernels.py, or run with another mode")


def _missing_fix(row: KernelKind) -> str:
    """How to get a kind's module, or do without it."""
    how = (f"build them with `agi install APP` (the {row.letter} bit in --modes)" if row.build == "cython"
           else f"give the app a {row.module}.py (docs/apps.md), and `agi install APP` for its hosts")
    if row.name in compiled_kinds():
        how += f", or pick other compiled kernels ([cluster] compiled = {' | '.join(repr(k) for k in compiled_kinds())})"
    return how + (f", or run without the {row.letter} bit" if row.letter else "")


def _set_threads(module: ModuleType, shape: ExecutionShape) -> None:
    """Tell a kernel module that runs its own threads how many (``set_threads``, when it has one):
    threads inside a kernel on top of a partition per core would oversubscribe."""
    set_threads = getattr(module, "set_threads", None)
    if callable(set_threads):
        set_threads(shape.kernel_threads)


def _gpu_choice(package: str, row: KernelKind, shape: ExecutionShape, gpu_check: str, python: str | None) -> tuple[KernelChoice | None, str]:
    """The GPU kind ``row`` when it can run in this process, else None and why not."""
    here, why_not = gpu_here()
    if here and os.environ.get(GPU_SLOT) == "0":
        here, why_not = False, f"the plan gives this worker no GPU on {socket.gethostname()}"
    module = _optional(f"{package}.{row.module}") if here else None
    reason = "" if module is None else gpu_reason_in_child(package, python, module=row.module) if gpu_check == "child" else gpu_reason(module)
    if module is not None and not reason:
        _set_threads(module, shape)
        return KernelChoice(module, row.name, "cuda:0 (simulator)" if simulated() else row.device,
                            "CUDA simulator" if simulated() else ""), ""
    if here:
        why_not = (f"the GPU of {socket.gethostname()} is not usable by {package}'s GPU kernels "
                   + (f"(no {row.module} module)" if module is None else f"({reason})"))
    return None, why_not
