"""Which cluster backends exist, found through the entry-point group ``agi_core.backends``.

A backend is a `agi_core.cluster.backend.ClusterBackend` subclass in any installed package whose
metadata declares it (docs/backends.md)::

    [project.entry-points."agi_core.backends"]
    theirs = "their_package.backend:TheirCluster"

agi's own backends are declared the same way in its pyproject.toml. `BUILTIN_BACKENDS` repeats
them so that an editable install whose metadata predates a new entry still finds them (and as
the install hint of each). Nothing is imported until a backend is asked for by name, so a
backend's dependencies (dask-jobqueue, a cloud SDK) cost nothing to runs that do not use it.

It is part of the settings (below the cluster package): the settings validate ``[cluster.<name>]``
with the named backend's options model, and ask it for the worker map it implies.

>>> {"ssh", "inprocess", "launched", "slurm"} <= set(backend_names())
True
>>> load_backend("ssh").__name__
'SshCluster'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from ..base.errors import AgiError

__all__ = ["BUILTIN_BACKENDS", "GROUP", "available_backends", "backend_names", "load_backend"]

#: the entry-point group a package registers its backends in
GROUP = "agi_core.backends"
#: the distribution that ships the built-in backends (its extras name their dependencies)
DISTRIBUTION = "agi-orchestrator"

#: name → {"class": "module:Class" of a `ClusterBackend` subclass, "err": the fix when it cannot be imported}
BUILTIN_BACKENDS: dict[str, dict[str, str]] = {
    # This machine only: scheduler in this process, workers as Nanny processes. Otherwise:
    # scheduler and workers launched on their hosts over SSH (local hosts in a local shell).
    "ssh": {"class": "agi_core.cluster.ssh_cluster:SshCluster", "err": f"pip install {DISTRIBUTION}"},
    # Always the embedded cluster (this machine only).
    "inprocess": {"class": "agi_core.cluster.inprocess:InProcessCluster", "err": f"pip install {DISTRIBUTION}"},
    # Always detached processes, also on this machine (what `agi cluster up` starts).
    "launched": {"class": "agi_core.cluster.launched:LaunchedCluster", "err": f"pip install {DISTRIBUTION}"},
    # Workers as Slurm batch jobs through dask-jobqueue; the scheduler on this machine (docs/slurm.md).
    "slurm": {"class": "agi_core.cluster.slurm:SlurmCluster", "err": f"pip install '{DISTRIBUTION}[slurm]'"},
    # A cluster asked of a Dask Gateway (Kubernetes, Slurm/PBS, YARN or local behind it; docs/gateway.md).
    "gateway": {"class": "agi_core.cluster.gateway:GatewayCluster", "err": f"pip install '{DISTRIBUTION}[gateway]'"},
}


def available_backends() -> dict[str, dict[str, str]]:
    """Every backend name → its entry (``class``, ``err``): the installed packages' entry points,
    and the built-ins their metadata lacks."""
    found: dict[str, dict[str, str]] = {}
    for point in metadata.entry_points(group=GROUP):
        if point.name in found:
            continue  # the first one found wins, as importlib orders the distributions on sys.path
        dist = point.dist.name if point.dist is not None else None
        builtin = BUILTIN_BACKENDS.get(point.name, {})
        err = builtin.get("err") if dist == DISTRIBUTION or dist is None else f"pip install --force-reinstall {dist}"
        found[point.name] = {"class": point.value, "err": err or f"pip install {DISTRIBUTION}"}
    return {**BUILTIN_BACKENDS, **found}


def backend_names() -> list[str]:
    """The names ``[cluster] backend`` accepts, sorted."""
    return sorted(available_backends())


def load_backend(name: str, registry: Mapping[str, Mapping[str, str]] | None = None) -> type[Any]:
    """The `ClusterBackend` subclass registered as ``name``, imported now.

    ``registry``: a mapping to use instead of the installed entry points (tests try a backend
    without installing it). Raises `AgiError`: for an unknown name, listing the known ones; for
    a class whose module or a package it needs cannot be imported, naming the backend and the fix.
    """
    backends = available_backends() if registry is None else registry
    entry = backends.get(name)
    if entry is None:
        raise AgiError(f"unknown cluster backend '{name}'",
                       fix=f"set [cluster] backend to one of: {', '.join(sorted(backends))} (or install the package "
                           f"that provides '{name}': it registers it in the entry-point group {GROUP})")
    target = entry["class"]
    # an entry point's "module:Class", or a dotted path "module.Class"
    module_name, _, attribute = target.partition(":") if ":" in target else target.rpartition(".")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part, None)
    except ImportError as exc:  # ModuleNotFoundError included: an optional package is not installed
        raise AgiError(f"the cluster backend '{name}' cannot be loaded: {exc}", fix=entry.get("err")) from None
    base = importlib.import_module("agi_core.cluster.backend").ClusterBackend  # above this layer: imported when asked
    if not (isinstance(found, type) and issubclass(found, base)):
        raise AgiError(f"the cluster backend '{name}' names {target}, which is not a ClusterBackend subclass",
                       fix=f"point the '{name}' entry point ({GROUP}) at a subclass of agi_core.cluster.backend.ClusterBackend")
    return found
