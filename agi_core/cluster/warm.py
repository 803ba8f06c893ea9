"""Warm clusters: started by `agi cluster up`, recorded in a state file, reused by runs that match.

The state file (``$XDG_STATE_HOME/agi_core/clusters/<app>.json``) holds the scheduler address, the
cluster's identity (scheduler, worker names and hosts) and every process with its host and PID, so
`agi cluster down` can stop them from any later process.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..errors import AgiError
from ..settings import ClusterSettings
from .backend import ClusterBackend
from .client import connect_client
from .inprocess import InProcessCluster
from .launched import LaunchedCluster
from .spec import ClusterSpec

__all__ = ["ClusterHandle", "WarmClusters", "open_cluster"]


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or "~/.local/state"
    return Path(base).expanduser() / "agi_core" / "clusters"


@dataclass
class WarmClusters:
    """The state files of warm clusters, one per app."""

    folder: Path

    @classmethod
    def default(cls) -> WarmClusters:
        return cls(_state_dir())

    def path(self, app: str) -> Path:
        return self.folder / f"{app}.json"

    def load(self, app: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(app).read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise AgiError(f"{self.path(app)}: unreadable warm-cluster state ({exc})",
                           fix=f"stop its processes by hand if any run, then delete {self.path(app)}") from None

    def save(self, app: str, spec: ClusterSpec, cluster: LaunchedCluster) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path(app), {"app": app, "identity": spec.identity(), "started": time.time(), **cluster.state()})

    def forget(self, app: str) -> None:
        self.path(app).unlink(missing_ok=True)


@dataclass
class ClusterHandle:
    """A connected client, and where the cluster came from."""

    client: Any
    backend: ClusterBackend
    warm: bool  # attached to a warm cluster (left running afterwards)
    note: str = ""


def mismatch(state: dict[str, Any], spec: ClusterSpec) -> str | None:
    """Why a warm cluster does not fit these settings, or None when it does."""
    have, want = state.get("identity", {}), spec.identity()
    reasons = []
    if have.get("scheduler") != want["scheduler"]:
        reasons.append(f"scheduler {have.get('scheduler')} vs {want['scheduler']}")
    if have.get("tls") != want["tls"]:
        reasons.append(f"tls {have.get('tls')} vs {want['tls']}")
    have_workers = {tuple(w[:2]) for w in have.get("workers", [])}
    want_workers = {tuple(w[:2]) for w in want["workers"]}
    if have_workers != want_workers:
        extra, missing = sorted(have_workers - want_workers), sorted(want_workers - have_workers)
        reasons.append("workers differ" + (f"; it has {', '.join(w[0] for w in extra)}" if extra else "")
                       + (f"; it lacks {', '.join(w[0] for w in missing)}" if missing else ""))
    if [w[2] for w in sorted(have.get("workers", []))] != [w[2] for w in sorted(want["workers"])] and not reasons:
        reasons.append("worker thread counts differ (pool bit?)")
    return "; ".join(reasons) or None


@contextlib.asynccontextmanager
async def open_cluster(app: str, spec: ClusterSpec, cluster: ClusterSettings, *, warm: WarmClusters | None = None) -> AsyncIterator[ClusterHandle]:
    """Attach to the app's warm cluster when it matches ``spec``; otherwise start one for this
    block and stop it at the end (also on errors and Ctrl-C)."""
    warm = warm or WarmClusters.default()
    state = warm.load(app)
    note = ""
    if state is not None:
        reason = mismatch(state, spec)
        if reason:
            raise AgiError(f"the warm cluster of '{app}' does not match these settings: {reason}",
                           fix=f"stop it with `agi cluster down {app}` (or run with the settings it was started with)")
        backend = LaunchedCluster.from_state(state, spec, cluster, app)
        try:
            client = await connect_client(backend, spec)
        except AgiError as exc:
            note = f"the warm cluster of '{app}' is not usable ({exc.message.splitlines()[0]}); started a cluster for this run"
        else:
            try:
                yield ClusterHandle(client, backend, warm=True)
            finally:
                await client.close()
            return
    backend = InProcessCluster(spec) if spec.local_only else LaunchedCluster(spec, cluster, app)
    await backend.start()
    try:
        client = await connect_client(backend, spec)
        try:
            yield ClusterHandle(client, backend, warm=False, note=note)
        finally:
            await client.close()
    finally:
        await backend.close()
