"""Dask clusters: declared from settings (`ClusterSpec`), started by a backend chosen by name
(`registry`), connected and checked (`client`, `versions`), or kept warm between runs (`warm`)."""

from .backend import ClusterBackend, ProcessRecord
from .client import connect_client, dask_config
from .manage import ClusterStatus, WorkerStatus, cluster_down, cluster_status, cluster_up
from .registry import backend_class, known_backends
from .spec import ClusterSpec, WorkerProcess, cluster_spec, spec_for
from .versions import WorkerFacts, worker_facts
from .warm import ClusterHandle, WarmClusters, open_cluster

__all__ = [
    "ClusterBackend",
    "ClusterHandle",
    "ClusterSpec",
    "ClusterStatus",
    "ProcessRecord",
    "WarmClusters",
    "WorkerFacts",
    "WorkerProcess",
    "WorkerStatus",
    "backend_class",
    "cluster_down",
    "cluster_spec",
    "cluster_status",
    "cluster_up",
    "connect_client",
    "dask_config",
    "known_backends",
    "open_cluster",
    "spec_for",
    "worker_facts",
]
