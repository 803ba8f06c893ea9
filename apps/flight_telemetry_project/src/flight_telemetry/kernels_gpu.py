"""The same aggregation on a GPU: `kernels`' functions given ``cudf`` instead of pandas.

cuDF is imported only when a kernel runs or `available` is asked (and `select_kernels` asks only
on a worker that owns a GPU), so importing this module loads no GPU library.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from .kernels import aggregate, read_flight, summarise_file, to_pandas

__all__ = ["aggregate", "available", "frame_module", "read_flight", "summarise_file", "to_pandas", "why_unavailable"]


def why_unavailable() -> str:
    """Why these kernels cannot run here ("" when they can): cuDF missing, or what importing it
    raised (no driver, no GPU, a CUDA version the driver does not support)."""
    if importlib.util.find_spec("cudf") is None:
        return "cuDF is not installed: the app's gpu extra (cudf-cu12)"
    try:
        import cudf  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - no driver, no GPU, wrong CUDA: not usable here, and why
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    return ""


def available() -> bool:
    """True when cuDF is installed here and imports (it needs a CUDA GPU and driver)."""
    return not why_unavailable()


def frame_module() -> ModuleType:
    """The dataframe module these kernels run on: cuDF."""
    import cudf

    return cudf
