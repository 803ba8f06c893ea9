"""Cluster backends by name: ``[cluster] backend = "ssh"`` → the class that starts the cluster.

`known_backends` maps a name to the dotted path of a `ClusterBackend` subclass and the one-line
fix to show when that class cannot be imported (an optional package is missing). Classes are
imported only when asked for, so a backend's dependencies (dask-jobqueue, a cloud SDK) cost
nothing to runs that do not use it.

Adding a backend (Slurm through dask-jobqueue, say) is one module plus one line here:

1. Write ``agi_core/cluster/slurm.py`` with ``class SlurmCluster(ClusterBackend)``. Its
   ``__init__(self, spec)`` takes only the `ClusterSpec`; `start` creates the jobqueue cluster
   (``dask_jobqueue.SLURMCluster(...)``, imported inside the module, so the registry's hint
   shows when it is missing), scales it to ``len(spec.workers)`` and sets ``self.address`` (and
   ``self.dashboard``); `close` closes it. Override `worker_names` when the job's workers do not
   register under their slot names, and `missing_workers_report` to point at the job logs.
   Everything else has a working default in `ClusterBackend`.
2. Add ``"slurm": {"class": "agi_core.cluster.slurm.SlurmCluster", "err": "pip install dask-jobqueue"}``
   to `known_backends`.
3. Users pick it with ``[cluster] backend = "slurm"``; the executor, the version check and the
   run record need no change.

The table is read, never written, at run time: pass your own mapping to `backend_class` to try
a backend without editing it (tests do).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from ..errors import AgiError
from .backend import ClusterBackend

__all__ = ["backend_class", "known_backends"]

#: backend name → {"class": dotted path of its `ClusterBackend` subclass, "err": the fix when it cannot be imported}
known_backends: dict[str, dict[str, str]] = {
    # This machine only: scheduler in this process, workers as Nanny processes. Otherwise:
    # scheduler and workers launched on their hosts over SSH (local hosts in a local shell).
    "ssh": {"class": "agi_core.cluster.ssh_cluster.SshCluster", "err": "pip install agi-orchestrator"},
    # Always the embedded cluster (this machine only).
    "inprocess": {"class": "agi_core.cluster.inprocess.InProcessCluster", "err": "pip install agi-orchestrator"},
    # Always detached processes, also on this machine (what `agi cluster up` starts).
    "launched": {"class": "agi_core.cluster.launched.LaunchedCluster", "err": "pip install agi-orchestrator"},
    # Workers as Slurm batch jobs through dask-jobqueue; the scheduler on this machine (docs/slurm.md).
    "slurm": {"class": "agi_core.cluster.slurm.SlurmCluster", "err": "pip install dask-jobqueue"},
}


def backend_class(name: str, registry: Mapping[str, Mapping[str, str]] | None = None) -> type[ClusterBackend]:
    """The backend class registered as ``name``, imported now.

    Raises `AgiError`: for an unknown name, listing the known ones; for a class whose module
    or a package it needs cannot be imported, naming the backend and the fix from its entry.
    """
    backends = known_backends if registry is None else registry
    entry = backends.get(name)
    if entry is None:
        raise AgiError(f"unknown cluster backend '{name}'",
                       fix=f"set [cluster] backend to one of: {', '.join(sorted(backends))}")
    module_name, _, class_name = entry["class"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # ModuleNotFoundError included: an optional package is not installed
        raise AgiError(f"the cluster backend '{name}' cannot be loaded: {exc}", fix=entry.get("err")) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, ClusterBackend)):
        raise AgiError(f"the cluster backend '{name}' names {entry['class']}, which is not a ClusterBackend subclass",
                       fix=f"point known_backends['{name}'] at a subclass of agi_core.cluster.backend.ClusterBackend")
    return cls
