"""The same kernels on numba.cuda (a real GPU, or numba's simulator with NUMBA_ENABLE_CUDASIM=1).

numba is imported only when a kernel runs or `available` is asked, never at import.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import numpy as np


def available() -> bool:
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver means: not here
        return False


cuda: Any = None  # numba.cuda, imported by the first kernel call (the simulator looks the name up in this module)


def _scale(values, factor, out):  # type: ignore[no-untyped-def]
    i = cuda.grid(1)
    if i < values.size:
        out[i] = values[i] * factor


@functools.cache
def _kernel() -> Any:
    global cuda
    from numba import cuda

    return cuda.jit(_scale)


def scale(values: np.ndarray, factor: float) -> np.ndarray:
    out = np.zeros_like(values)
    threads = 32
    _kernel()[(values.size + threads - 1) // threads, threads](values, factor, out)
    return out
