"""Share I/O failures said as `ShareError`: what was being done, the path, the errno's name, the fix.

A full share (ENOSPC), a read-only mount (EROFS), a quota (EDQUOT) or missing permissions surface
in the manager as bare `OSError`s from deep inside the record writer or the cache; the user
needs the path, the cause by name and what to do, not a traceback.

>>> import errno
>>> err = share_error(OSError(errno.ENOSPC, "No space left on device", "/srv/share/runs/x/manifest.json"),
...                   "writing the run record")
>>> err.message
'No space left on device (ENOSPC) writing the run record /srv/share/runs/x/manifest.json'
>>> err.fix.split(" (`df")[0]  # then `df -h` of the nearest folder that exists
'free space on the file system of /srv/share/runs/x/manifest.json'
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import NoReturn

from .errors import ShareError

__all__ = ["errno_name", "is_file_error", "raise_with_path", "share_error"]

#: errnos that mean a file or folder could not be read or written, even when no path is attached
_FILE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT,
                          errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ESTALE, errno.ENOTEMPTY, errno.EXDEV})


def is_file_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a file system failure (a share error), not a network or other system one:
    a connection timeout is an `OSError` too, and "check the share" would send the user astray.

    >>> is_file_error(OSError(errno.ENOSPC, "No space left on device")), is_file_error(TimeoutError("connect"))
    (True, False)
    >>> is_file_error(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    False
    """
    if not isinstance(exc, OSError):
        return False
    if exc.filename is not None:
        return True
    return exc.errno in _FILE_ERRNOS


def errno_name(exc: OSError) -> str:
    """``ENOSPC`` for errno 28; ``OSError`` when the error has no errno."""
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def raise_with_path(exc: OSError, path: Path | str) -> NoReturn:
    """Raise ``exc``, naming ``path`` when it names no file (a ``write`` or ``close`` that hits a
    full disk does not): the same errno, so the same subclass (`OSError` picks it from the errno)."""
    if exc.filename is not None or exc.errno is None:
        raise exc
    raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _fix(exc: OSError, path: str) -> str:
    folder = os.path.dirname(path) or "."
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:  # a run folder removed since
        folder = os.path.dirname(folder)
    elsewhere = "or point [cluster] workers_data_path at another share"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "free space" if exc.errno == errno.ENOSPC else "free space within your quota (or raise it)"
        return f"{what} on the file system of {path} (`df -h {folder}`); {elsewhere}"
    if exc.errno == errno.EROFS:
        return f"the share is mounted read-only: remount it read-write (`mount -o remount,rw`), {elsewhere}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"give this user write access to {folder} (`ls -ld {folder}`), {elsewhere}"
    return f"check the share at {folder} (mounted, reachable, writable), {elsewhere}"


def share_error(exc: OSError, doing: str) -> ShareError:
    """The `ShareError` for ``exc``, which happened while ``doing`` (e.g. "writing the run record"):
    ``<strerror> (<ERRNO>) <doing> <path>``, and a fix for that errno."""
    path = str(exc.filename) if exc.filename is not None else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    message = f"{reason} ({errno_name(exc)}) {doing}" + (f" {path}" if path else "")
    return ShareError(message, fix=_fix(exc, path or "the share"))
