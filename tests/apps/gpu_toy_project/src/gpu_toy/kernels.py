"""Reference kernels (NumPy)."""

from __future__ import annotations

import numpy as np


def scale(values: np.ndarray, factor: float) -> np.ndarray:
    return values * factor
