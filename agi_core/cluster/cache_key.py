"""Getting the owner's cache key (`agi_core.cache.auth`) to workers that do not share this machine's state folder.

Workers on this machine read it from the state folder. A remote host gets a copy, the way it gets
the cluster's TLS files: ``<[cluster.install] root>/keys/cache.key`` (0600, in a 0700 folder),
uploaded over the host's session (`upload_key`); Slurm jobs read the copy published beside their
logs on the shared filesystem (`publish_key`). Each worker finds its copy through the environment
variable `auth.KEY_ENV` (`worker_env`). The key never goes to the share, a record, the settings or a bundle.
"""

from __future__ import annotations

from pathlib import Path

from ..base.atomic import write_bytes_atomic
from ..base.hosts import HostAddress
from ..cache.auth import KEY_ENV, ensure_key, key_file
from ..ssh import HostSession, shell_path

__all__ = ["publish_key", "remote_key_path", "upload_key", "worker_env"]


def remote_key_path(root: str) -> str:
    """Where a remote host keeps its copy of the key (``root``: agi's folder on that host)."""
    return f"{root.rstrip('/')}/keys/cache.key"


def worker_env(host: str, root: str) -> tuple[tuple[str, str], ...]:
    """The variable that tells a worker on ``host`` where its copy of the key is (``~`` is
    expanded by the worker: `auth.worker_key`)."""
    return ((KEY_ENV, str(key_file()) if HostAddress.parse(host).is_local else remote_key_path(root)),)


async def upload_key(session: HostSession, host: str, root: str) -> None:
    """Copy the key to a remote ``host`` (the mode, 0600, travels with it); a local host reads the state folder."""
    if HostAddress.parse(host).is_local:
        ensure_key()
        return
    target = remote_key_path(root)
    folder = target.rsplit("/", 1)[0]
    await session.run(f"mkdir -p {shell_path(folder)} && chmod 700 {shell_path(folder)}", what="making the folder of the cache key")
    ensure_key()
    await session.put(key_file(), target)


def publish_key(folder: Path) -> Path:
    """Copy the key into ``folder`` (made 0700; the copy 0600) for jobs that read it there; returns the copy's path."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    target = folder / "cache.key"
    write_bytes_atomic(target, ensure_key().secret, mode=0o600)
    return target
