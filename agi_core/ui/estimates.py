"""Plan loads in seconds: a plan's loads are in the app's own weight units (``1.386e+09`` says
nothing), so the page shows each slot's share of the makespan, and, once a run of the app exists,
an estimate in seconds from that run's recorded partition times (seconds per unit of weight)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import AgiError
from ..provenance import RunStore, read_record

__all__ = ["Rate", "seconds_per_weight"]


@dataclass(frozen=True)
class Rate:
    """Seconds of partition time per unit of plan weight, measured on run ``run_id``."""

    seconds_per_weight: float
    run_id: str
    partitions: int  # how many partitions it was measured on

    def seconds(self, load: float) -> float:
        return load * self.seconds_per_weight


def _weights(plan_file: Path) -> dict[str, float]:
    data = json.loads(plan_file.read_text())
    return {p["id"]: float(p.get("weight", 1.0)) for p in data.get("partitions", [])}


def seconds_per_weight(store: RunStore, app: str, cache: dict[str, Any] | None = None, *, look_at: int = 20) -> Rate | None:
    """The rate of the newest successful run of ``app`` that computed partitions (of the ``look_at``
    newest records); None before any. ``cache`` (kept by the caller) maps a manifest to its rate,
    keyed by its mtime, so a page load reads no record twice."""
    cache = cache if cache is not None else {}
    manifests = sorted(store.manifests(app), key=lambda p: p.parent.name, reverse=True)[:look_at]
    for manifest in manifests:
        try:
            stamp = manifest.stat().st_mtime
        except OSError:
            continue
        key = str(manifest)
        if key in cache and cache[key][0] == stamp:
            rate = cache[key][1]
        else:
            rate = _measure(manifest, store)
            cache[key] = (stamp, rate)
        if rate is not None:
            return rate
    return None


def _measure(manifest: Path, store: RunStore) -> Rate | None:
    try:
        record = read_record(manifest, store.access)
        if record.status != "ok":
            return None
        weights = _weights(manifest.parent / record.plan.file)
    except (AgiError, OSError, ValueError):
        return None
    seconds = weight = 0.0
    counted = 0
    for part in record.partitions:
        if part.status == "ok" and part.id in weights:
            seconds += part.duration_s
            weight += weights[part.id]
            counted += 1
    if weight <= 0 or seconds <= 0:
        return None
    return Rate(seconds / weight, record.run_id, counted)
