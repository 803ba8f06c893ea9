"""Atomic file writes: write beside the target, then rename over it, so a reader (or a crash)
never sees half a file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def write_bytes_atomic(path: Path, data: bytes | Iterable[bytes], *, mode: int = 0o666, sync: bool = False) -> None:
    """Write ``data`` (bytes, or chunks of them: a large file need not be joined in memory first)
    to ``path`` atomically; ``mode`` applies from the first byte (e.g. 0o600 for keys), less the
    umask as for any file (a run's umask makes its files 0640: `share_access`). Nothing is
    left behind on failure; the `OSError` raised names ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    except OSError as exc:
        _raise_naming(exc, path)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes | bytearray | memoryview):
                handle.write(data)
            else:
                handle.writelines(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            _raise_naming(exc, path)
        raise


def _raise_naming(exc: OSError, path: Path) -> NoReturn:
    """Raise ``exc`` naming the file the caller asked for, not the temporary one beside it, nor
    nothing (a ``write`` that hits a full disk names no file): same errno, same subclass."""
    if exc.errno is None:
        raise exc
    raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_text_atomic(path: Path, text: str, *, sync: bool = False) -> None:
    write_bytes_atomic(path, text.encode(), sync=sync)


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON, flushed to disk before the rename (run records must survive a power cut)."""
    write_bytes_atomic(path, json.dumps(data, indent=1, default=str).encode(), sync=True)
