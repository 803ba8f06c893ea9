"""The numba.cuda escape-time kernel; imported by `kernels_gpu` only when it runs (numba is imported here).

Every multiply and add is an explicit, correctly rounded operation, so that NVVM, which contracts
``a*b + c`` into a fused multiply-add by default even without fastmath, cannot change a rounding:
libdevice's ``dmul_rn`` / ``dadd_rn`` are never fused, and ``fma_rn`` fuses where NumPy does. Under
the simulator the same names are Python operations (each rounded once) and an exact ``fma``. The
``cuda`` module must be a global of this module: the simulator swaps it for its own at launch.
"""

from __future__ import annotations

from numba import cuda

from .kernels_gpu import FUSED, FUSED_NEG, exact_fma, simulated

__all__ = ["escape"]

if simulated():
    def mul(a: float, b: float) -> float:
        return a * b

    def add(a: float, b: float) -> float:
        return a + b

    fma = exact_fma  # the simulator's own cuda.fma is a*b + c, rounded twice
else:
    from numba.cuda import libdevice

    mul, add, fma = libdevice.dmul_rn, libdevice.dadd_rn, libdevice.fma_rn


@cuda.jit(fastmath=False, cache=True)  # cached on disk: a fresh worker process skips the JIT
def escape(re, im, max_iter, rule, counts):  # numba infers the types from the arguments
    """One thread per pixel: ``counts[y, x]`` = iterations before ``re[x] + i*im[y]`` escapes."""
    x, y = cuda.grid(2)
    if y >= counts.shape[0] or x >= counts.shape[1]:
        return
    cr = re[x]
    ci = im[y]
    zr = 0.0
    zi = 0.0
    n = max_iter
    for i in range(max_iter):
        # The real part of z*z, rounded the way this host's NumPy rounds it (kernels_gpu.square_rule).
        if rule == FUSED:
            square_re = fma(zr, zr, -mul(zi, zi))
        elif rule == FUSED_NEG:
            square_re = fma(-zi, zi, mul(zr, zr))
        else:
            square_re = add(mul(zr, zr), -mul(zi, zi))
        next_zr = add(square_re, cr)
        zi = add(mul(mul(2.0, zr), zi), ci)  # NumPy's zr*zi + zi*zr, which is exactly 2*zr*zi
        zr = next_zr
        if add(mul(zr, zr), mul(zi, zi)) > 4.0:
            n = i
            break
    counts[y, x] = n
