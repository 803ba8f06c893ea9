"""Temporary names in the cache that say who writes them, so an unfinished write can be told apart
from one in progress.

A worker writes each pack, and each entry's output files, under a ``.tmp-`` name and renames it
into place. A writer killed half-way (SIGKILL, a lost node, Ctrl-C of a slot the manager then
kills) leaves that file behind: on a large result, hundreds of MB that no reader sees. The name
carries the writer's pid and host (`temp_name`), so `agi cache gc` removes the file as soon as
that process is gone from this host (`writer_alive`), and only after an age limit otherwise (a
writer on another host, a name written by an older agi_core).

The host part is the host name plus this process's PID namespace, when the system says which:
two containers on one host may share the host name but not their process ids.

>>> name = temp_name("0000018c2f-42-ab12cd34-1.pack")
>>> name.startswith(".tmp-") and name.endswith("@0000018c2f-42-ab12cd34-1.pack")
True
>>> writer_of(name) == (os.getpid(), host_tag())
True
>>> writer_alive(name)
True
>>> writer_of(".tmp-0000018c2f-42-ab12cd34-1.pack") is None  # the older form: no writer named
True
"""

from __future__ import annotations

import functools
import os
import re
import socket

__all__ = ["TEMP_PREFIX", "host_tag", "is_temp", "temp_name", "writer_alive", "writer_of"]

TEMP_PREFIX = ".tmp-"
_WRITER = re.compile(r"\.tmp-(\d+)@([A-Za-z0-9._~-]+)@")


@functools.cache
def host_tag() -> str:
    """This host's name (characters other than letters, digits, ``.``, ``_`` and ``-`` replaced),
    and ``~`` + the inode of this process's PID namespace where /proc says it."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return host
    return f"{host}~{namespace}"


def temp_name(final: str) -> str:
    """The temporary name of ``final`` (a file or folder name) while this process writes it:
    ``.tmp-<pid>@<host tag>@<final>``."""
    return f"{TEMP_PREFIX}{os.getpid()}@{host_tag()}@{final}"


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def writer_of(name: str) -> tuple[int, str] | None:
    """``(pid, host tag)`` of the process that made the temporary ``name``; None when the name
    does not say (another file, or the older ``.tmp-<final>`` form)."""
    match = _WRITER.match(name)
    return (int(match[1]), match[2]) if match else None


def writer_alive(name: str) -> bool | None:
    """Whether the writer of the temporary ``name`` still runs: True or False when it ran on this
    host (and in this PID namespace), None when that cannot be known from here. A pid that was
    reused since reads as alive: the file is then kept until the age limit, never removed early."""
    writer = writer_of(name)
    if writer is None or writer[1] != host_tag():
        return None
    try:
        os.kill(writer[0], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user
    return not _zombie(writer[0])


def _zombie(pid: int) -> bool:
    """A process that has exited and waits for its parent to reap it: it writes nothing any more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
