"""The aggregation, written once for any pandas-like dataframe module: pandas here, cuDF on GPUs.

Every function takes the module (``xdf``) or frames made by it, and uses only what pandas and cuDF
both offer (read_parquet/read_csv, boolean masks, arithmetic, groupby with named aggregations), so
`kernels_gpu` is these same functions given ``cudf``. What leaves a partition is a small pandas
frame of sums, counts and extremes per tail and phase, which combine exactly across files.

>>> import pandas as pd
>>> frame = pd.DataFrame({"tail": ["A", "A", "B"], "phase": ["cruise"] * 3, "altitude_ft": [3e4, 3.2e4, 3.6e4],
...                       "ground_speed_kt": [450.0, 460.0, 440.0], "fuel_flow_kgph": [2400.0, 2600.0, 2000.0],
...                       "egt_c": [760.0, 770.0, 750.0]})
>>> aggregate(frame, pd)[["tail", "rows", "fuel_kg", "max_altitude_ft"]].to_dict("records")[0]
{'tail': 'A', 'rows': 2, 'fuel_kg': 1.3888888888888888, 'max_altitude_ft': 32000.0}
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pandas

__all__ = ["aggregate", "frame_module", "read_flight", "summarise_file", "to_pandas"]


def frame_module() -> ModuleType:
    """The dataframe module these kernels run on: pandas."""
    return pandas


def read_flight(path: str | Path, xdf: ModuleType) -> Any:
    """One flight's file as an ``xdf`` dataframe (Parquet or CSV, by its suffix)."""
    path = str(path)
    return xdf.read_parquet(path) if path.endswith(".parquet") else xdf.read_csv(path)


def aggregate(frame: Any, xdf: ModuleType) -> Any:
    """Per tail and phase: rows, fuel burnt (kg; one row = one second), sums for means, extremes."""
    frame = frame.assign(fuel_kg=frame["fuel_flow_kgph"] / 3600.0, overheat=(frame["egt_c"] > 900.0).astype("int64"))
    grouped = frame.groupby(["tail", "phase"], sort=True).agg(
        rows=("fuel_kg", "count"), fuel_kg=("fuel_kg", "sum"), speed_sum=("ground_speed_kt", "sum"),
        egt_sum=("egt_c", "sum"), max_altitude_ft=("altitude_ft", "max"), max_egt_c=("egt_c", "max"),
        overheat_s=("overheat", "sum"))
    return grouped.reset_index()


def to_pandas(frame: Any) -> pandas.DataFrame:
    """A result frame on the host, as pandas (cuDF frames are copied off the GPU)."""
    return frame.to_pandas() if hasattr(frame, "to_pandas") and not isinstance(frame, pandas.DataFrame) else frame


def summarise_file(path: str | Path, xdf: ModuleType | None = None) -> pandas.DataFrame:
    """The one code path of a partition: read, aggregate, bring back, with ``xdf`` (default pandas)."""
    xdf = xdf or frame_module()
    return to_pandas(aggregate(read_flight(path, xdf), xdf))
