"""The Dask dashboard from the UI: the key plots of a run's cluster (distributed serves each one
alone at ``/individual-…``), and, where a cluster run has no dashboard, why not."""

from __future__ import annotations

import importlib.util

__all__ = ["PLOTS", "no_dashboard_reason"]

#: (route under the dashboard's root, label): routes of ``distributed.dashboard.scheduler``
PLOTS: tuple[tuple[str, str], ...] = (
    ("individual-task-stream", "task stream"),
    ("individual-progress", "progress"),
    ("individual-cpu", "worker CPU"),
    ("individual-workers-memory", "worker memory"),
)


def no_dashboard_reason() -> str:
    """Why a cluster run on this machine would have no dashboard (what the page says instead of a dead link)."""
    try:
        missing = importlib.util.find_spec("bokeh") is None
    except (ImportError, ValueError):
        missing = True
    if missing:
        return "no Dask dashboard: bokeh is not installed here (pip install bokeh, then run again)"
    return "no Dask dashboard: [cluster.dask] dashboard_port is empty (set it, e.g. 8787, then run again)"
