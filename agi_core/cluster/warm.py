"""Warm clusters: started by `agi cluster up`, recorded in a state file, reused by runs that match.

The state file (``paths.state_dir("clusters")/<app>.json``) holds the backend's name, the spec
the cluster was started with, its identity (what a run's spec must match to reuse it) and the
backend's own state (scheduler address, every process with its host and PID), so `agi cluster
down` can stop it from any later process. A run attached to a warm Slurm cluster adds the
replacement jobs it submits to that file, and `agi cluster down` marks it as stopping before it
cancels them: every change is made under the file's lock (`warm_state`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import paths
from ..base.atomic import write_json_atomic
from ..base.errors import AgiError
from ..base.events import EventSink, Notice, ignore
from .backend import ClusterBackend
from .client import connect_client
from .joining import wait_for_min_workers
from .registry import backend_class
from .spec import ClusterSpec
from .warm_state import editing, state_lock

__all__ = ["ClusterHandle", "WarmClusters", "open_cluster"]


@dataclass
class WarmClusters:
    """The state files of warm clusters, one per app."""

    folder: Path

    @classmethod
    def default(cls) -> WarmClusters:
        return cls(paths.state_dir("clusters"))

    def path(self, app: str) -> Path:
        return self.folder / f"{app}.json"

    def load(self, app: str) -> dict[str, Any] | None:
        """The app's state, ``state_file`` naming where it was read (a backend that changes it
        later, `slurm_warm`, edits that file), or None when no warm cluster is recorded."""
        try:
            return {**json.loads(self.path(app).read_text()), "state_file": str(self.path(app))}
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise AgiError(f"{self.path(app)}: unreadable warm-cluster state ({exc})",
                           fix=f"stop its processes by hand if any run, then delete {self.path(app)}") from None

    def save(self, app: str, spec: ClusterSpec, backend: ClusterBackend) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with state_lock(self.path(app)):
            write_json_atomic(self.path(app), {"app": app, "backend": spec.backend, "identity": spec.identity(),
                                               "spec": spec.to_json(), "started": time.time(), **backend.state()})

    def stopping(self, app: str) -> dict[str, Any] | None:
        """Mark the app's warm cluster as stopping and return its state as it is now (None: none
        is recorded). From then on no run adds a job to it (`slurm_warm`), so the jobs this state
        names are all the jobs there are to stop."""
        if not self.path(app).exists():
            return None
        with editing(self.path(app)) as state:
            if state is not None:
                state["stopping"] = True
        return self.load(app)

    def forget(self, app: str) -> None:
        if not self.path(app).exists():
            return
        with state_lock(self.path(app)):
            self.path(app).unlink(missing_ok=True)


def attach(state: dict[str, Any], spec: ClusterSpec | None = None) -> ClusterBackend:
    """The backend of a recorded warm cluster (nothing started); ``spec`` defaults to the one it
    was started with."""
    if spec is None:
        if "spec" not in state:
            raise AgiError(f"the warm-cluster state of '{state.get('app')}' does not record its settings",
                           fix="pass the app's cluster spec, or stop its processes by hand and delete the state file")
        spec = ClusterSpec.from_json(state["spec"])
    return backend_class(state.get("backend", spec.backend)).attach(spec, state)


@dataclass
class ClusterHandle:
    """A connected client, the backend it came from, and which Dask worker serves each slot."""

    client: Any
    backend: ClusterBackend
    warm: bool  # attached to a warm cluster (left running afterwards)
    note: str = ""
    worker_names: dict[str, str] = field(default_factory=dict)  # slot → Dask worker name


def mismatch(state: dict[str, Any], spec: ClusterSpec) -> str | None:
    """Why a warm cluster does not fit these settings, or None when it does."""
    have, want = state.get("identity", {}), spec.identity()
    reasons = []
    if have.get("backend", "ssh") != want["backend"]:
        reasons.append(f"backend {have.get('backend', 'ssh')} vs {want['backend']}")
    if have.get("scheduler") != want["scheduler"]:
        reasons.append(f"scheduler {have.get('scheduler')} vs {want['scheduler']}")
    if have.get("tls") != want["tls"]:
        reasons.append(f"tls {have.get('tls')} vs {want['tls']}")
    have_options, want_options = have.get("options") or {}, want.get("options") or {}
    if have_options != want_options:  # the backend's own options that shape the cluster (`ClusterBackend.identity`)
        changed = sorted(key for key in {*have_options, *want_options} if have_options.get(key) != want_options.get(key))
        reasons.append(f"[cluster.{want['backend']}] {', '.join(changed)} differ")
    have_workers = {tuple(w[:2]) for w in have.get("workers", [])}
    want_workers = {tuple(w[:2]) for w in want["workers"]}
    if have_workers != want_workers:
        extra, missing = sorted(have_workers - want_workers), sorted(want_workers - have_workers)
        reasons.append("workers differ" + (f"; it has {', '.join(w[0] for w in extra)}" if extra else "")
                       + (f"; it lacks {', '.join(w[0] for w in missing)}" if missing else ""))
    if [w[2] for w in sorted(have.get("workers", []))] != [w[2] for w in sorted(want["workers"])] and not reasons:
        reasons.append("worker thread counts differ (pool bit?)")
    return "; ".join(reasons) or None


async def _attached_client(backend: ClusterBackend, spec: ClusterSpec, emit: EventSink) -> Any:
    """A client of a warm cluster once ``spec.min_workers`` of its workers joined. Between
    connecting and waiting, the backend replaces the workers that ended while no run was attached
    (`ClusterBackend.tend`: a warm Slurm cluster's jobs past their walltime, `slurm_warm`), so
    that the run waits for their replacements, not for workers that will not come."""
    client = await connect_client(backend, spec, wait=False)
    try:
        try:
            await backend.tend(work_left=True, emit=emit)
        except Exception as exc:  # noqa: BLE001 - a help: the run waits for the workers there are
            emit(Notice(f"could not replace the workers that left: {type(exc).__name__}: {exc}", level="warning"))
        await wait_for_min_workers(client, backend, spec)
    except BaseException:
        await client.close()
        raise
    return client


@contextlib.asynccontextmanager
async def open_cluster(spec: ClusterSpec, *, warm: WarmClusters | None = None,
                       emit: EventSink = ignore) -> AsyncIterator[ClusterHandle]:
    """Attach to the app's warm cluster when it matches ``spec``; otherwise start the spec's
    backend for this block (``emit`` receives its progress) and stop it at the end (also on
    errors and Ctrl-C)."""
    warm = warm or WarmClusters.default()
    state = warm.load(spec.app)
    note = ""
    if state is not None:
        reason = mismatch(state, spec)
        if reason:
            raise AgiError(f"the warm cluster of '{spec.app}' does not match these settings: {reason}",
                           fix=f"stop it with `agi cluster down {spec.app}` (or run with the settings it was started with)")
        backend = attach(state, spec)
        try:
            client = await _attached_client(backend, spec, emit)
        except AgiError as exc:
            note = (f"the warm cluster of '{spec.app}' is not usable ({exc.message.splitlines()[0]}); "
                    "started a cluster for this run")
        else:
            try:
                yield ClusterHandle(client, backend, warm=True, worker_names=backend.worker_names())
            finally:
                await client.close()
            return
    backend = backend_class(spec.backend)(spec)
    await backend.start(emit)
    try:
        client = await connect_client(backend, spec, emit=emit)
        try:
            yield ClusterHandle(client, backend, warm=False, note=note, worker_names=backend.worker_names())
        finally:
            await client.close()
    finally:
        await backend.close()
