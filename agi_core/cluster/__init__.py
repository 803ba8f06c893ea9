"""Dask clusters: declared from settings, started in-process, launched on hosts, or kept warm."""

from .backend import ClusterBackend
from .client import connect_client, dask_config
from .inprocess import InProcessCluster
from .launched import LaunchedCluster
from .spec import ClusterSpec, WorkerProcess, cluster_spec
from .warm import ClusterHandle, WarmClusters, open_cluster

__all__ = [
    "ClusterBackend",
    "ClusterHandle",
    "ClusterSpec",
    "InProcessCluster",
    "LaunchedCluster",
    "WarmClusters",
    "WorkerProcess",
    "cluster_spec",
    "connect_client",
    "dask_config",
    "open_cluster",
]
