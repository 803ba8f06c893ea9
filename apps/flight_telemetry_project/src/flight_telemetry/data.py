"""The synthetic dataset: one file of second-by-second telemetry per flight, made from a seed.

Each flight is a tail number flying taxi → climb → cruise → descent → taxi; its rows are one per
second (so flights differ in length, and files in size). Nothing is downloaded: the same args give
the same files, byte for byte, on any machine. A dataset is written to a folder of its own (named
after the args that shape it) and renamed into place once complete, so a half-written dataset is
never read.

>>> frame = flight_frame(3, seed=1, rows=600)
>>> list(frame.columns)[:4], len(frame), sorted(set(frame["phase"]))
(['t_s', 'tail', 'phase', 'altitude_ft'], 600, ['climb', 'cruise', 'descent', 'taxi'])
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["PHASES", "TAILS", "dataset_dir", "ensure_dataset", "flight_frame"]

TAILS = tuple(f"F-AG{c}{d}" for c in "ABCD" for d in "12345")  # 20 aircraft
PHASES = ("taxi", "climb", "cruise", "descent")
# share of a flight in each phase: taxi out, climb, cruise, descent, taxi in
_SHARES = (0.05, 0.15, 0.55, 0.2, 0.05)


def flight_frame(flight: int, *, seed: int, rows: int) -> pd.DataFrame:
    """The telemetry of one flight: ``rows`` seconds, from ``seed`` and the flight number alone."""
    rng = np.random.default_rng([seed, flight])
    bounds = np.cumsum([0, *(int(rows * share) for share in _SHARES[:-1])])
    phase_index = np.searchsorted(bounds, np.arange(rows), side="right") - 1  # 0..4
    phase = np.array(PHASES + ("taxi",))[phase_index]
    cruise_ft = rng.uniform(28000, 39000)
    t = np.arange(rows, dtype=np.float64)
    progress = np.zeros(rows)
    for k, (start, stop) in enumerate(zip(bounds, [*bounds[1:], rows], strict=True)):
        progress[start:stop] = np.linspace(0, 1, max(stop - start, 1), endpoint=False)[: stop - start] if k in (1, 3) else 0
    altitude = np.select([phase_index == 1, phase_index == 2, phase_index == 3],
                         [cruise_ft * progress, np.full(rows, cruise_ft), cruise_ft * (1 - progress)], 0.0)
    altitude = np.maximum(altitude + rng.normal(0, 40, rows), 0)
    speed = np.select([phase_index == 1, phase_index == 2, phase_index == 3],
                      [160 + 280 * progress, np.full(rows, 450.0), 440 - 280 * progress], 15.0) + rng.normal(0, 4, rows)
    fuel = np.select([phase_index == 1, phase_index == 2, phase_index == 3], [3200.0, 2400.0, 1100.0], 400.0)
    fuel = fuel * rng.uniform(0.9, 1.1) + rng.normal(0, 60, rows)
    egt = np.select([phase_index == 1, phase_index == 2, phase_index == 3], [880.0, 760.0, 520.0], 450.0) + rng.normal(0, 8, rows)
    return pd.DataFrame({
        "t_s": t, "tail": TAILS[int(rng.integers(len(TAILS)))], "phase": phase, "altitude_ft": altitude,
        "ground_speed_kt": speed, "fuel_flow_kgph": fuel, "egt_c": egt, "flight": flight,
    })


def dataset_dir(root: Path, *, flights: int, min_rows: int, max_rows: int, seed: int, fmt: str) -> Path:
    """The folder of the dataset these args make: ``<root>/<fmt>-<hash of the args>``."""
    shape = json.dumps([flights, min_rows, max_rows, seed, fmt])
    return Path(root).expanduser() / f"{fmt}-{hashlib.sha256(shape.encode()).hexdigest()[:12]}"


def ensure_dataset(root: Path, *, flights: int, min_rows: int, max_rows: int, seed: int, fmt: str) -> list[Path]:
    """The dataset's files, generated first if this folder does not hold it yet."""
    folder = dataset_dir(root, flights=flights, min_rows=min_rows, max_rows=max_rows, seed=seed, fmt=fmt)
    if not (folder / ".complete").is_file():
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        lengths = np.random.default_rng([seed, 0xF11E]).integers(min_rows, max_rows + 1, flights)
        for flight, rows in enumerate(lengths):
            frame = flight_frame(flight, seed=seed, rows=int(rows))
            path = tmp / f"flight-{flight:05d}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
        (tmp / ".complete").write_text(str(flights))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same dataset first: same seed, same files
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(folder.glob(f"flight-*.{fmt}"))
