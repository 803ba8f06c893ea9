"""GPU kernels (rapids bit, 8): the same functions as kernels.py, on numba.cuda, with the same results.

One CUDA thread per pixel runs the per-pixel loop of the Cython kernel (`_cuda_escape`). The counts
equal NumPy's bit for bit when every floating-point operation is rounded as NumPy rounds it:

- NVVM contracts ``a*b + c`` into a fused multiply-add by default, even without fastmath, which
  rounds once instead of twice. Every multiply and add in the kernel is therefore an explicit
  libdevice ``dmul_rn`` / ``dadd_rn``, which are never fused, and fused where NumPy fuses (``fma_rn``).
- NumPy's complex ``z * z`` computes its real part as ``fma(zr, zr, -(zi*zi))`` on CPUs with FMA
  and as ``zr*zr - zi*zi`` without; which one this host's NumPy uses is checked once
  (`square_rule`), on a few hundred numbers, and passed to the kernel.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no GPU needed) the same kernel runs as
Python, with plain float operations (each rounded once) and an exact ``fma``, so its image is the
reference image. numba is imported only when a kernel is first needed: importing this module works
on any host, and `available` says whether it can run here.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import numpy as np

__all__ = ["available", "escape_counts", "simulated", "square_rule"]

FUSED, FUSED_NEG, PLAIN = 0, 1, 2  # how the real part of z*z is rounded; as in kernels_cy.pyx
_RULE_NAMES = ("fma", "fma-neg", "plain")
_BLOCK = (16, 16)  # threads per block: 256, a warp-friendly 2-D tile of pixels


def simulated() -> bool:
    """True when numba.cuda runs on its simulator (``NUMBA_ENABLE_CUDASIM=1``, read by numba at import)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def available() -> bool:
    """Whether `escape_counts` can run here: numba is installed and sees a GPU, or runs its simulator."""
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())  # always true on the simulator
    except Exception:  # noqa: BLE001 - a broken CUDA driver or runtime means: not here
        return False


def exact_fma(a: float, b: float, c: float) -> float:
    """``a*b + c`` rounded once, as a hardware FMA does (Python 3.11 has no ``math.fma``).

    Finite doubles are dyadic rationals, so the exact value is an integer ratio, and Python's
    int / int true division rounds it correctly to the nearest double.
    """
    (an, ad), (bn, bd), (cn, cd) = float(a).as_integer_ratio(), float(b).as_integer_ratio(), float(c).as_integer_ratio()
    return (an * bn * cd + cn * ad * bd) / (ad * bd * cd)


def _square_re_py(zr: float, zi: float, rule: int, fma: Callable[[float, float, float], float]) -> float:
    if rule == FUSED:
        return fma(zr, zr, -(zi * zi))
    if rule == FUSED_NEG:
        return fma(-zi, zi, zr * zr)
    return zr * zr - zi * zi


@functools.cache
def square_rule() -> str:
    """How this host's NumPy rounds the real part of complex ``z * z``: "fma", "fma-neg" or "plain".

    Checked on long arrays (NumPy's SIMD loop) and short ones (its tails), as the reference kernel
    sees them. When no rule matches every sample, "plain": boundary pixels may then differ.
    """
    rng = np.random.default_rng(20261122)
    samples = []
    for size in (509, 1, 2, 3, 5, 7):
        z = rng.uniform(-2.0, 2.0, size) + 1j * rng.uniform(-2.0, 2.0, size)
        samples.extend(zip(z.real.tolist(), z.imag.tolist(), (z * z).real.tolist()))
    for rule in (FUSED, FUSED_NEG, PLAIN):
        if all(_square_re_py(zr, zi, rule, exact_fma) == square for zr, zi, square in samples):
            return _RULE_NAMES[rule]
    return "plain"


def escape_counts(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
    """Iterations before ``z -> z**2 + c`` leaves the radius-2 disc; ``max_iter`` for points inside.

    Returns a ``(len(im), len(re))`` uint16 array, equal to ``kernels.escape_counts``.
    """
    from numba import cuda

    from ._cuda_escape import escape

    re = np.ascontiguousarray(re, dtype=np.float64)
    im = np.ascontiguousarray(im, dtype=np.float64)
    counts = np.empty((len(im), len(re)), dtype=np.uint16)
    if counts.size == 0:
        return counts
    grid = (-(-len(re) // _BLOCK[0]), -(-len(im) // _BLOCK[1]))
    device_counts = cuda.device_array(counts.shape, dtype=np.uint16)
    escape[grid, _BLOCK](cuda.to_device(re), cuda.to_device(im), int(max_iter), _RULE_NAMES.index(square_rule()), device_counts)
    return device_counts.copy_to_host(counts)
