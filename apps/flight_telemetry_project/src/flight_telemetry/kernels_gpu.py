"""The same aggregation on a GPU: `kernels`' functions given ``cudf`` instead of pandas.

cuDF is imported only when a kernel runs or `available` is asked (and `select_kernels` asks only
on a worker that owns a GPU), so importing this module loads no GPU library.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from .kernels import aggregate, read_flight, summarise_file, to_pandas

__all__ = ["aggregate", "available", "frame_module", "read_flight", "summarise_file", "to_pandas"]


def available() -> bool:
    """True when cuDF is installed here and imports (it needs a CUDA GPU and driver)."""
    if importlib.util.find_spec("cudf") is None:
        return False
    try:
        import cudf  # noqa: F401
    except Exception:  # noqa: BLE001 - no driver, no GPU, wrong CUDA: not usable here
        return False
    return True


def frame_module() -> ModuleType:
    """The dataframe module these kernels run on: cuDF."""
    import cudf

    return cudf
