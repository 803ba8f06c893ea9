"""Compiled CPU kernels on numba (kernel kind ``numba``): the same functions as kernels.py, the same results.

The per-pixel loop of the Cython kernel, compiled by ``numba.njit(parallel=True, cache=True)``:
rows go to numba's threads (``prange``; with ``set_threads(1)``, under the pool bit, a serial
version runs, which starts no threading layer: numba's OpenMP layer breaks in a forked child, and
its workqueue layer is not thread-safe under a Dask worker's threads), and ``LANES`` neighbouring pixels of a row iterate in
lockstep so that independent chains keep the FPU busy (as in ``kernels_cy.pyx``). The counts equal
NumPy's bit for bit because every operation is rounded as NumPy rounds it:

- numba compiles without fastmath, so LLVM fuses no ``a*b + c`` of its own;
- the real part of ``z * z`` is ``fma(zr, zr, -(zi*zi))`` where this host's NumPy fuses it (its
  SIMD loops on CPUs with FMA) and ``zr*zr - zi*zi`` where it does not: which one is checked once
  (``kernels_gpu.square_rule``) and passed to the kernel; the FMA is LLVM's ``llvm.fma.f64``.

numba is imported when a kernel is first needed: importing this module works without numba, and
`why_unavailable` says what is missing. The compiled code is cached on disk next to the module
(``cache=True``), so `warm` at ``agi install`` spares each worker the compile.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from .kernels_gpu import _RULE_NAMES, square_rule

__all__ = ["escape_counts", "get_threads", "set_threads", "warm", "why_unavailable"]

LANES = 8  # pixels of a row iterated in lockstep
_threads = 0  # numba threads per call; 0: numba's default (every core, or NUMBA_NUM_THREADS)


def why_unavailable() -> str:
    """Why `escape_counts` cannot run here ("" when it can): numba is missing."""
    return "" if importlib.util.find_spec("numba") is not None else "numba is not installed (the app's numba extra)"


def set_threads(threads: int) -> None:
    """Threads that `escape_counts` runs rows on: ``threads >= 1``, or 0 for numba's default."""
    global _threads
    if threads < 0:
        raise ValueError(f"threads must be 0 (numba's default) or more, not {threads}")
    _threads = threads


def get_threads() -> int:
    """What `set_threads` was last given (0: numba's default)."""
    return _threads


@functools.cache
def _compiled() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The njit kernels, compiled (or loaded from numba's on-disk cache) on first use: rows on
    numba's threads, and rows one after the other (no threading layer: see `escape_counts`)."""
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:  # noqa: ARG001 - numba's intrinsic protocol
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:  # noqa: ARG001
            double = ir.DoubleType()
            llvm_fma = builder.module.declare_intrinsic("llvm.fma", [double], ir.FunctionType(double, [double] * 3))
            return builder.call(llvm_fma, args)

        return types.float64(types.float64, types.float64, types.float64), codegen

    @numba.njit(cache=True, fastmath=False, nogil=True)
    def row(re: np.ndarray, ci: float, max_iter: int, rule: int, counts: np.ndarray) -> None:
        """One row: each pixel runs exactly the per-pixel loop; ``LANES`` neighbours go in lockstep."""
        width = re.size
        cr = np.empty(LANES)
        zr = np.empty(LANES)
        zi = np.empty(LANES)
        n = np.empty(LANES, np.int64)
        for x in range(0, width, LANES):
            m = min(LANES, width - x)
            for k in range(LANES):
                cr[k] = re[x + k] if k < m else 0.0
                zr[k] = 0.0
                zi[k] = 0.0
                n[k] = max_iter if k < m else 0  # 0: a padding lane, already done
            left = m
            for i in range(max_iter):
                for k in range(LANES):
                    a = zr[k]
                    b = zi[k]
                    if rule == 0:
                        square = fma(a, a, -(b * b))
                    elif rule == 1:
                        square = fma(-b, b, a * a)
                    else:
                        square = a * a - b * b
                    zr[k] = square + cr[k]
                    zi[k] = 2.0 * a * b + ci
                for k in range(LANES):
                    if n[k] == max_iter and zr[k] * zr[k] + zi[k] * zi[k] > 4.0:
                        n[k] = i
                        zr[k] = 0.0  # park the lane at a point that stays finite
                        zi[k] = 0.0
                        cr[k] = 0.0
                        left -= 1
                if left == 0:
                    break
            for k in range(m):
                counts[x + k] = n[k]

    @numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
    def rows_parallel(re: np.ndarray, im: np.ndarray, max_iter: int, rule: int, counts: np.ndarray) -> None:
        for y in numba.prange(im.size):
            row(re, im[y], max_iter, rule, counts[y])

    @numba.njit(cache=True, fastmath=False, nogil=True)
    def rows_serial(re: np.ndarray, im: np.ndarray, max_iter: int, rule: int, counts: np.ndarray) -> None:
        for y in range(im.size):
            row(re, im[y], max_iter, rule, counts[y])

    return rows_parallel, rows_serial


def escape_counts(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
    """Iterations before ``z -> z**2 + c`` leaves the radius-2 disc; ``max_iter`` for points inside.

    Returns a ``(len(im), len(re))`` uint16 array, equal to ``kernels.escape_counts``.
    """
    re = np.ascontiguousarray(re, dtype=np.float64)
    im = np.ascontiguousarray(im, dtype=np.float64)
    counts = np.empty((len(im), len(re)), dtype=np.uint16)
    if counts.size == 0:
        return counts
    parallel, serial = _compiled()
    rule = _RULE_NAMES.index(square_rule())
    if _threads == 1:  # a partition per core already (the pool bit): no threading layer at all
        serial(re, im, int(max_iter), rule, counts)
        return counts
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(_threads, numba.config.NUMBA_NUM_THREADS) if _threads else numba.config.NUMBA_NUM_THREADS)
    try:
        parallel(re, im, int(max_iter), rule, counts)
    finally:
        numba.set_num_threads(before)
    return counts


def warm() -> None:
    """Compile the kernels now (``agi install``, a worker's start) into numba's on-disk cache, or load
    them from it: the serial one, and the parallel one unless `set_threads` said 1 (compiling it
    starts numba's threading layer, which a process that forks workers must not have)."""
    re, im = np.linspace(-2.0, 0.5, 3), np.linspace(-1.0, 1.0, 2)
    parallel, serial = _compiled()
    serial(re, im, 4, _RULE_NAMES.index(square_rule()), np.empty((2, 3), dtype=np.uint16))
    if _threads != 1:
        parallel.compile(serial.nopython_signatures[0])
