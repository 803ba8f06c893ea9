"""A launched cluster's TLS credentials on its hosts (`HostCredentials`): made, written, named, deleted.

Apart from `launched` (the processes' life cycle) because the credentials have their own: made
before anything starts (or given by the cluster's owner, a Slurm cluster's scheduler), written
to each host before its processes start, named on their command lines, deleted with them; a warm
cluster also keeps a copy on the manager (`tls.manager_folder`) for the processes that attach to
it later. Files and folders: `tls`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..ssh import HostSession, shell_path
from .spec import ClusterSpec

if TYPE_CHECKING:
    from .tls import ClusterCredentials

__all__ = ["HostCredentials"]


class HostCredentials:
    """One launched cluster's credentials: none without ``[cluster] tls``."""

    def __init__(self, spec: ClusterSpec, credentials: ClusterCredentials | None, *, tethered: bool) -> None:
        """``credentials``: given by the cluster's owner, else made by `prepare`; ``tethered``:
        a cluster for one run (a warm cluster, not tethered, keeps a copy on the manager)."""
        self.spec = spec
        self.tethered = tethered
        self.credentials = credentials if spec.tls else None
        self._security: Any = None
        self.id: str | None = None  # the credentials' folder name (`tls.cluster_id`), once made
        self.saved: Path | None = None  # a warm cluster's copy on the manager (`tls.manager_folder`)
        self.hosts: set[str] = set()  # the hosts (worker-map keys) this process wrote them to

    def security(self) -> Any:
        """The client's `distributed.Security`, or None without TLS."""
        if self.credentials is None and self.saved is not None:  # attached: read when first needed
            from .tls import ClusterCredentials

            self.credentials = ClusterCredentials.load(self.saved, cluster=f"the warm cluster of '{self.spec.app}'")
        if self.credentials is None:
            return None
        if self._security is None:
            self._security = self.credentials.security()
        return self._security

    def folder(self) -> str:
        """This cluster's credentials on each host: ``<root>/tls/<cluster id>``."""
        return f"{self.spec.root}/tls/{self.id}"

    def flags(self) -> str:
        """The ``dask scheduler`` / ``dask worker`` flags that name them ("" without TLS)."""
        if self.credentials is None:
            return ""
        folder = self.folder()
        return (f" --tls-ca-file {shell_path(folder + '/ca.pem')} --tls-cert {shell_path(folder + '/cluster.pem')}"
                f" --tls-key {shell_path(folder + '/cluster.key')}")

    def prepare(self) -> None:
        """Make this cluster's credentials (unless given) and name their folder; a warm cluster
        keeps a copy on the manager for the processes that attach to it later."""
        from .tls import cluster_id, make_credentials, manager_folder

        if not self.spec.tls:
            return
        if self.credentials is None:
            self.credentials = make_credentials(self.spec.tls_names())
        self.id = cluster_id(self.spec.app, warm=not self.tethered)
        if not self.tethered:
            self.saved = manager_folder(self.id)
            self.credentials.save(self.saved)

    def cleanup(self) -> str:
        """The shell command that deletes this cluster's credentials on a host ("" without TLS)."""
        return f"rm -rf {shell_path(self.folder())}" if self.id else ""

    async def write(self, sessions: dict[str, HostSession]) -> None:
        """The credentials to each host of ``sessions`` (remembered: `close` deletes them there)."""
        if self.credentials is not None:
            self.hosts |= set(sessions)
        await asyncio.gather(*(self._upload(session) for session in sessions.values()))

    async def _upload(self, session: HostSession) -> None:
        """The credentials into a 0700 folder on the host, files 0600 from their first byte (umask),
        sent on standard input (never on a command line, which other users can read)."""
        if self.credentials is None:
            return
        top, folder = shell_path(f"{self.spec.root}/tls"), shell_path(self.folder())
        prepare = f"mkdir -p {top} && umask 077 && mkdir -p {folder} && chmod 700 {top} {folder} && "
        for name, text in self.credentials.texts().items():
            await session.run(f"{prepare}umask 077 && cat > {folder}/{name}", input=text,
                              what=f"writing the cluster's TLS credentials ({name})")
            prepare = ""

    def forget_saved(self) -> None:
        """Delete a warm cluster's copy on the manager (the cluster is stopped)."""
        from .tls import remove_credentials

        if self.saved is not None:
            remove_credentials(self.saved)

    def state(self) -> dict[str, Any] | None:
        """What a warm cluster's state file keeps of them (`found` reads it back)."""
        return None if self.saved is None else {"id": self.id, "folder": str(self.saved)}

    def found(self, state: dict[str, Any] | None) -> None:
        """A warm cluster's credentials, named by its state: `security` reads them when first
        needed, so `agi cluster down` works without them."""
        if self.spec.tls and state:
            self.id, self.saved = state["id"], Path(state["folder"])
