"""Reference kernels (NumPy). Cython and GPU versions keep the same signatures."""

from __future__ import annotations

import numpy as np


def escape_counts(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
    """Iterations before ``z -> z**2 + c`` leaves the radius-2 disc, for every ``c = re + i*im``.

    Returns a ``(len(im), len(re))`` uint16 array; points that never escape get ``max_iter``.
    Only points still inside are iterated, so the cost is the total iteration count.
    """
    c = (re[np.newaxis, :] + 1j * im[:, np.newaxis]).ravel()
    counts = np.full(c.size, max_iter, dtype=np.uint16)
    index = np.arange(c.size)
    z = np.zeros_like(c)
    for i in range(max_iter):
        z = z * z + c
        escaped = (z.real * z.real + z.imag * z.imag) > 4.0
        if escaped.any():
            counts[index[escaped]] = i
            keep = ~escaped
            index, z, c = index[keep], z[keep], c[keep]
            if index.size == 0:
                break
    return counts.reshape(len(im), len(re))
