"""Who may read and write what agi keeps on the share: the modes it creates, and the folders it refuses.

What agi creates on the share during a run (run folders, records, cache packs, output files) gets
its modes from the process's umask, which a run sets from ``[cluster.share] group_access``
(`share_umask`; workers set the same from their job):

- ``"read"`` (the default): folders 0750, files 0640: the group reads results, nobody else does;
- ``"write"``: 0770 and 0660, for a lab group that shares one cache and one set of runs;
- ``"none"``: 0700 and 0600.

Reading is the other half, the way OpenSSH refuses an ``authorized_keys`` that others can write:
agi loads no cache entry and no run record from a folder that users other than its owner can
write (nor its group, unless ``group_access = "write"``), nor from one inside a folder that they
can write up to the share (a folder with the sticky bit, like ``/tmp``, is fine above the
cache's or the run's own folder: others cannot rename what is ours there). `check_folder` raises
`UnsafeFolder` with the ``chmod`` that fixes it. Permission bits are checked, not who the process
is, so the check means the same as root.

>>> ShareAccess.of("read").modes, ShareAccess.of("write").modes, ShareAccess.of("none").umask == 0o077
(('0750', '0640'), ('0770', '0660'), True)
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import AgiError

__all__ = ["GROUP_ACCESS", "ShareAccess", "UnsafeFolder", "check_folder", "share_umask"]

#: ``[cluster.share] group_access`` values -> the umask a run uses
GROUP_ACCESS = {"none": 0o077, "read": 0o027, "write": 0o007}


class UnsafeFolder(AgiError):
    """A folder of the share that others can write: agi does not load entries or records from it."""


@dataclass(frozen=True)
class ShareAccess:
    """``group_access`` as modes: what a run creates, and whether a group-writable folder may be read."""

    group_access: str = "read"

    @classmethod
    def of(cls, group_access: str) -> ShareAccess:
        if group_access not in GROUP_ACCESS:
            raise ValueError(f"group_access {group_access!r}: expected one of {', '.join(GROUP_ACCESS)}")
        return cls(group_access)

    @property
    def umask(self) -> int:
        return GROUP_ACCESS[self.group_access]

    @property
    def group_write(self) -> bool:
        return self.group_access == "write"

    @property
    def modes(self) -> tuple[str, str]:
        """(folders, files) as octal strings."""
        return f"{0o777 & ~self.umask:04o}", f"{0o666 & ~self.umask:04o}"


@contextlib.contextmanager
def share_umask(access: ShareAccess) -> Iterator[None]:
    """The process's umask set from ``access`` while the block runs (restored after): what the
    run and the processes it starts create on the share gets `ShareAccess.modes`."""
    before = os.umask(access.umask)
    try:
        yield
    finally:
        os.umask(before)


def _writers(mode: int, group_write: bool) -> str | None:
    if mode & stat.S_IWOTH:
        return "other users"
    if mode & stat.S_IWGRP and not group_write:
        return "its group"
    return None


def check_folder(folder: Path, access: ShareAccess, *, what: str, share: Path | None = None, file: Path | None = None) -> None:
    """Raise `UnsafeFolder` when users other than the owner (and the group, unless
    ``access.group_write``) can write ``folder`` (or ``file`` in it), or any folder above it up to
    ``share`` (inclusive) without the sticky bit. ``what``: what is not loaded ("cache entries").
    A folder that does not exist is fine (nothing to load)."""
    chain = [folder]
    if share is not None:
        share = Path(share)
        parent = folder
        while parent != share and share in parent.parents:
            parent = parent.parent
            chain.append(parent)
    for index, path in enumerate([file, *chain] if file is not None else chain):
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        above = index > (1 if file is not None else 0)  # an ancestor of the folder itself
        who = _writers(mode, access.group_write)
        if who is None or (above and mode & stat.S_ISVTX):
            continue
        bits = "o-w" if who == "other users" else "g-w"
        lab = ("" if who == "other users" else
               '; or, if your group shares it on purpose, set [cluster.share] group_access = "write"')
        raise UnsafeFolder(f"{path} is writable by {who} (mode {stat.S_IMODE(mode):04o}): agi does not load {what} "
                           f"from {folder} while someone else could have put them there",
                           fix=f"chmod {bits} {path}{lab}")
