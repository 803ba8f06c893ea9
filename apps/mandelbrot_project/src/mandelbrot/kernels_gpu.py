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
on any host, and `available` says whether it can run here (`why_unavailable`: why not).

Per band, allocating device memory and copying through pageable host memory cost about ten times
the kernel itself, so a worker keeps its device buffers and a pinned host buffer from one band to
the next (`_Buffers`, per thread: a CUDA context belongs to the process, and bands of one image
share their shape), and the compiled kernel is cached on disk (``cache=True``): a fresh worker
process skips the JIT.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["available", "escape_counts", "simulated", "square_rule", "why_unavailable"]

FUSED, FUSED_NEG, PLAIN = 0, 1, 2  # how the real part of z*z is rounded; as in kernels_cy.pyx
_RULE_NAMES = ("fma", "fma-neg", "plain")
_BLOCK = (16, 16)  # threads per block: 256, a warp-friendly 2-D tile of pixels


def simulated() -> bool:
    """True when numba.cuda runs on its simulator (``NUMBA_ENABLE_CUDASIM=1``). Asked of the
    ``numba.cuda`` that was loaded, numba's built-in target or NVIDIA's numba-cuda, whichever
    config module read the switch."""
    from numba import cuda

    return "simulator" in getattr(cuda.jit, "__module__", "")


def why_unavailable() -> str:
    """Why `escape_counts` cannot run here ("" when it can): numba missing, or what numba.cuda
    says about the driver and the GPU (a driver too old for the CUDA wheels, no device)."""
    if importlib.util.find_spec("numba") is None:
        return "numba (numba-cuda) is not installed: the app's gpu extra"
    try:
        from numba import cuda

        if cuda.is_available():  # always true on the simulator
            return ""
        cuda.current_context()  # is_available() swallows the reason: this raises it
        return "numba.cuda sees no usable GPU"
    except Exception as exc:  # noqa: BLE001 - a broken CUDA driver or runtime means: not here, and why
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def available() -> bool:
    """Whether `escape_counts` can run here: numba is installed and sees a GPU, or runs its simulator."""
    return not why_unavailable()


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


class _Buffers(threading.local):
    """A thread's device buffers and pinned host buffer, reused from one band to the next: bands of
    an image share their width, and their heights differ by a row, so the buffers are sized for the
    tallest band seen and each band uses their first rows (a new width replaces them)."""

    def __init__(self) -> None:
        self.width = -1
        self.rows = 0
        self.arrays: tuple[Any, Any, Any, np.ndarray] | None = None

    def get(self, cuda: Any, height: int, width: int) -> tuple[Any, Any, Any, np.ndarray]:
        """Device ``re`` (width), ``im`` (height), ``counts`` and pinned host ``counts``, of this band's size."""
        if self.arrays is None or width != self.width or height > self.rows:
            shape = (height, width)
            self.arrays = (cuda.device_array(width, dtype=np.float64), cuda.device_array(height, dtype=np.float64),
                           cuda.device_array(shape, dtype=np.uint16), cuda.pinned_array(shape, dtype=np.uint16))
            self.width, self.rows = width, height
        device_re, device_im, device_counts, host_counts = self.arrays
        return device_re, device_im[:height], device_counts[:height], host_counts[:height]


_buffers = _Buffers()


def escape_counts(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
    """Iterations before ``z -> z**2 + c`` leaves the radius-2 disc; ``max_iter`` for points inside.

    Returns a ``(len(im), len(re))`` uint16 array, equal to ``kernels.escape_counts``.
    """
    from numba import cuda

    from ._cuda_escape import escape

    re = np.ascontiguousarray(re, dtype=np.float64)
    im = np.ascontiguousarray(im, dtype=np.float64)
    shape = (len(im), len(re))
    if shape[0] * shape[1] == 0:
        return np.empty(shape, dtype=np.uint16)
    device_re, device_im, device_counts, host_counts = _buffers.get(cuda, *shape)
    device_re.copy_to_device(re)
    device_im.copy_to_device(im)
    grid = (-(-len(re) // _BLOCK[0]), -(-len(im) // _BLOCK[1]))
    escape[grid, _BLOCK](device_re, device_im, int(max_iter), _RULE_NAMES.index(square_rule()), device_counts)
    device_counts.copy_to_host(host_counts)
    return host_counts.copy()  # the pinned buffer is the next band's
