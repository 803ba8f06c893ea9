# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
"""Compiled kernels (mode bit 2): the same functions as kernels.py, with the same results.

``escape_counts`` gives bit-for-bit the counts of the NumPy version on the same host. The only
operation where that needs care is the real part of ``z * z``: NumPy's SIMD loops compute it with
a fused multiply-add, ``fma(zr, zr, -(zi*zi))``, on CPUs that have FMA (x86-64 with AVX2 or
AVX-512, for example), and as ``zr*zr - zi*zi`` in its plain loops. Which one this NumPy uses is
checked once, at import, on a few hundred numbers (``SQUARE_RULE``), and the kernel uses the same.
The imaginary part, ``zr*zi + zi*zr``, is ``2*zr*zi`` exactly in both. The module is compiled with
``-ffp-contract=off`` so the C compiler adds no fusions of its own.

Rows run in parallel on OpenMP threads (``prange``; the build adds ``-fopenmp`` where the compiler
has it, else they run in order). How many is `set_threads`: agi_core sets 1 when the pool bit
already runs a partition per core, and OpenMP's default (the cores, or ``OMP_NUM_THREADS``) else.
"""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport fma

__all__ = ["SQUARE_RULE", "MATCHES_NUMPY", "escape_counts", "get_threads", "set_threads"]

cdef enum:
    FUSED = 0       # fma(zr, zr, -(zi*zi))  NumPy's SIMD loops on CPUs with FMA
    FUSED_NEG = 1   # fma(-zi, zi, zr*zr)    the other operand order, in case a NumPy build uses it
    PLAIN = 2       # zr*zr - zi*zi          NumPy's loops without FMA

_RULE_NAMES = ("fma", "fma-neg", "plain")


cdef inline double _square_re(double zr, double zi, int rule) noexcept nogil:
    """The real part of ``(zr + i*zi)**2``, rounded the way ``rule`` says."""
    if rule == FUSED:
        return fma(zr, zr, -(zi * zi))
    if rule == FUSED_NEG:
        return fma(-zi, zi, zr * zr)
    return zr * zr - zi * zi


def _numpy_square_rule():
    """Which rule NumPy's complex ``z * z`` follows here, or -1 when none matches all samples."""
    rng = np.random.default_rng(20261122)
    got = []
    # A long array (SIMD main loop) and short ones (the loops' tails), as the NumPy kernel sees them.
    for size in (509, 1, 2, 3, 5, 7):
        z = rng.uniform(-2.0, 2.0, size) + 1j * rng.uniform(-2.0, 2.0, size)
        got.extend(zip(z.real.tolist(), z.imag.tolist(), (z * z).real.tolist()))
    for rule in (FUSED, FUSED_NEG, PLAIN):
        if all(_square_re(zr, zi, rule) == square for zr, zi, square in got):
            return rule
    return -1


cdef int _rule = _numpy_square_rule()
MATCHES_NUMPY = _rule >= 0
if not MATCHES_NUMPY:
    _rule = PLAIN  # an unknown NumPy: the textbook formula; boundary pixels may then differ by rounding
SQUARE_RULE = _RULE_NAMES[_rule]


DEF LANES = 8  # pixels of a row iterated in lockstep: independent chains keep the FPU busy

cdef int _threads = 0  # OpenMP threads per call; 0: OpenMP's default


def set_threads(int threads):
    """Threads that `escape_counts` runs rows on: ``threads >= 1``, or 0 for OpenMP's default."""
    global _threads
    if threads < 0:
        raise ValueError(f"threads must be 0 (OpenMP's default) or more, not {threads}")
    _threads = threads


def get_threads():
    """What `set_threads` was last given (0: OpenMP's default)."""
    return _threads


cdef void _row(const double* re, Py_ssize_t width, double ci, int max_iter, int rule,
               unsigned short* counts) noexcept nogil:
    """One row: each pixel runs exactly the per-pixel loop; ``LANES`` neighbours go in lockstep."""
    cdef double cr[LANES]
    cdef double zr[LANES]
    cdef double zi[LANES]
    cdef double next_zr[LANES]
    cdef int n[LANES]
    cdef Py_ssize_t x, k, m
    cdef int i, left
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
                next_zr[k] = _square_re(zr[k], zi[k], rule) + cr[k]
                zi[k] = 2.0 * zr[k] * zi[k] + ci
                zr[k] = next_zr[k]
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


def escape_counts(re, im, int max_iter):
    """Iterations before ``z -> z**2 + c`` leaves the radius-2 disc; ``max_iter`` for points inside.

    Returns a ``(len(im), len(re))`` uint16 array, equal to ``kernels.escape_counts``. Rows go to
    the threads one at a time, as each finishes one (their costs differ a lot).
    """
    cdef const double[::1] re_c = np.ascontiguousarray(re, dtype=np.float64)
    cdef const double[::1] im_c = np.ascontiguousarray(im, dtype=np.float64)
    cdef Py_ssize_t width = re_c.shape[0], height = im_c.shape[0], y
    out = np.empty((height, width), dtype=np.uint16)
    if height == 0 or width == 0:
        return out
    cdef unsigned short[:, ::1] counts = out
    cdef int rule = _rule, threads = _threads
    if threads > 0:
        for y in prange(height, nogil=True, schedule="dynamic", num_threads=threads):
            _row(&re_c[0], width, im_c[y], max_iter, rule, &counts[y, 0])
    else:
        for y in prange(height, nogil=True, schedule="dynamic"):
            _row(&re_c[0], width, im_c[y], max_iter, rule, &counts[y, 0])
    return out
