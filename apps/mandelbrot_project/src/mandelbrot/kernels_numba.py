"""Compiled CPU kernels on numba (kernel kind ``numba``): the same functions as kernels.py, the same results.

The per-pixel loop of the Cython kernel, compiled by ``numba.njit(parallel=True, cache=True)``:
rows go to numba's threads (``prange``), and ``LANES`` neighbouring pixels of a row iterate in
lockstep, in scalars, so that independent chains keep the FPU busy (as in ``kernels_cy.pyx``).
With ``set_threads(1)`` (the pool bit: a partition per core already) a serial version runs, which
starts no threading layer: numba's OpenMP layer cannot run in a process forked after it started,
and its workqueue layer is not thread-safe under a Dask worker's threads. The counts equal
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

    @numba.njit(cache=True, fastmath=False, nogil=True, inline="always")
    def square_re(a: float, b: float, rule: int) -> float:
        """The real part of ``(a + i*b)**2``, rounded as this host's NumPy rounds it."""
        if rule == 0:
            return fma(a, a, -(b * b))
        if rule == 1:
            return fma(-b, b, a * a)
        return a * a - b * b

    @numba.njit(cache=True, fastmath=False, nogil=True)
    def row(re: np.ndarray, ci: float, max_iter: int, rule: int, counts: np.ndarray) -> None:  # noqa: PLR0915 - unrolled lanes
        """One row: each pixel runs exactly the per-pixel loop; 8 neighbours go in lockstep, in
        scalars (LLVM keeps them in registers; lane arrays it cannot, not knowing they do not alias)."""
        width = re.size
        for x in range(0, width, LANES):
            m = min(LANES, width - x)
            c0 = re[x]
            c1 = re[x + 1] if m > 1 else 0.0
            c2 = re[x + 2] if m > 2 else 0.0
            c3 = re[x + 3] if m > 3 else 0.0
            c4 = re[x + 4] if m > 4 else 0.0
            c5 = re[x + 5] if m > 5 else 0.0
            c6 = re[x + 6] if m > 6 else 0.0
            c7 = re[x + 7] if m > 7 else 0.0
            a0 = b0 = a1 = b1 = a2 = b2 = a3 = b3 = a4 = b4 = a5 = b5 = a6 = b6 = a7 = b7 = 0.0
            n0, d0 = max_iter, False  # a lane past the row's end is a padding lane, done at once
            n1, d1 = (max_iter, False) if m > 1 else (0, True)
            n2, d2 = (max_iter, False) if m > 2 else (0, True)
            n3, d3 = (max_iter, False) if m > 3 else (0, True)
            n4, d4 = (max_iter, False) if m > 4 else (0, True)
            n5, d5 = (max_iter, False) if m > 5 else (0, True)
            n6, d6 = (max_iter, False) if m > 6 else (0, True)
            n7, d7 = (max_iter, False) if m > 7 else (0, True)
            for i in range(max_iter):
                a0, b0 = square_re(a0, b0, rule) + c0, 2.0 * a0 * b0 + ci
                a1, b1 = square_re(a1, b1, rule) + c1, 2.0 * a1 * b1 + ci
                a2, b2 = square_re(a2, b2, rule) + c2, 2.0 * a2 * b2 + ci
                a3, b3 = square_re(a3, b3, rule) + c3, 2.0 * a3 * b3 + ci
                a4, b4 = square_re(a4, b4, rule) + c4, 2.0 * a4 * b4 + ci
                a5, b5 = square_re(a5, b5, rule) + c5, 2.0 * a5 * b5 + ci
                a6, b6 = square_re(a6, b6, rule) + c6, 2.0 * a6 * b6 + ci
                a7, b7 = square_re(a7, b7, rule) + c7, 2.0 * a7 * b7 + ci
                if not d0 and a0 * a0 + b0 * b0 > 4.0:
                    n0, d0, a0, b0, c0 = i, True, 0.0, 0.0, 0.0  # parked where it stays finite
                if not d1 and a1 * a1 + b1 * b1 > 4.0:
                    n1, d1, a1, b1, c1 = i, True, 0.0, 0.0, 0.0
                if not d2 and a2 * a2 + b2 * b2 > 4.0:
                    n2, d2, a2, b2, c2 = i, True, 0.0, 0.0, 0.0
                if not d3 and a3 * a3 + b3 * b3 > 4.0:
                    n3, d3, a3, b3, c3 = i, True, 0.0, 0.0, 0.0
                if not d4 and a4 * a4 + b4 * b4 > 4.0:
                    n4, d4, a4, b4, c4 = i, True, 0.0, 0.0, 0.0
                if not d5 and a5 * a5 + b5 * b5 > 4.0:
                    n5, d5, a5, b5, c5 = i, True, 0.0, 0.0, 0.0
                if not d6 and a6 * a6 + b6 * b6 > 4.0:
                    n6, d6, a6, b6, c6 = i, True, 0.0, 0.0, 0.0
                if not d7 and a7 * a7 + b7 * b7 > 4.0:
                    n7, d7, a7, b7, c7 = i, True, 0.0, 0.0, 0.0
                if d0 and d1 and d2 and d3 and d4 and d5 and d6 and d7:
                    break
            for k, n in enumerate((n0, n1, n2, n3, n4, n5, n6, n7)):
                if k < m:
                    counts[x + k] = n

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
        with numba.parallel_chunksize(1):  # rows one at a time, as each thread finishes one: their costs differ a lot
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
