"""Helpers shared by the benchmarks: timing and JSON output with machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """Every temporary folder the benchmark makes (`tempfile.mkdtemp`: its shares, about 800 MB
    per 1,000,000-partition run) goes under one folder, removed at the end however it ends."""
    root = Path(tempfile.mkdtemp(prefix="agi-bench-"))
    before = tempfile.tempdir
    tempfile.tempdir = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = before
        shutil.rmtree(root, ignore_errors=True)


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "runs_s": [round(t, 4) for t in times]}


def write(name: str, data: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` with the machine it ran on, and print it."""
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps(payload, indent=1))
    return path


def warm_security(app: str) -> Any:
    """The `distributed.Security` of ``app``'s warm cluster (its own credentials; None with
    ``tls = false``), for the plain-Dask baselines that connect their own client to it."""
    from agi_core.cluster import WarmClusters
    from agi_core.cluster.warm import attach

    return attach(WarmClusters.default().load(app)).security()
