"""Cluster backends by name: ``[cluster] backend = "ssh"`` → the class that starts the cluster.

Backends are found through the entry-point group ``agi_core.backends``
(`agi_core.settings.backend_plugins`): a package registers its `ClusterBackend` subclass under a name in
its pyproject.toml, and ``[cluster] backend = "NAME"`` selects it, with no change to agi_core.
agi's own backends (ssh, inprocess, launched, slurm) are registered the same way;
`known_backends` is their table (the fallback when an install's metadata predates an entry).
Classes are imported only when asked for, so a backend's dependencies (dask-jobqueue, a cloud
SDK) cost nothing to runs that do not use it.

Adding a backend is one module plus one entry point (docs/backends.md has a complete one in
its own package):

1. Write ``class TheirCluster(ClusterBackend)`` with an ``Options`` pydantic model (its
   ``[cluster.theirs]`` table), `launch` (start the scheduler and the workers, set
   ``self.address``) and `close`; override the hooks whose default does not fit (worker map,
   threads, install hosts, port rules, identity, dry run, ``job_id_env``).
2. Register it: ``[project.entry-points."agi_core.backends"] theirs = "their_pkg.backend:TheirCluster"``.
3. Users pick it with ``[cluster] backend = "theirs"``; the executor, the version check and the
   run record need no change.

Pass your own mapping to `backend_class` to try a backend without installing it (tests do).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..settings.backend_plugins import BUILTIN_BACKENDS, available_backends, load_backend
from .backend import ClusterBackend

__all__ = ["available_backends", "backend_class", "known_backends"]

#: the built-in backends: name → {"class": "module:Class", "err": the fix when it cannot be imported}
known_backends: dict[str, dict[str, str]] = BUILTIN_BACKENDS


def backend_class(name: str, registry: Mapping[str, Mapping[str, str]] | None = None) -> type[ClusterBackend]:
    """The backend class registered as ``name``, imported now (`backend_plugins.load_backend`).

    Raises `AgiError`: for an unknown name, listing the known ones; for a class whose module
    or a package it needs cannot be imported, naming the backend and the fix from its entry.
    """
    return load_backend(name, registry)
