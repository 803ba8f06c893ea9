"""Atomic file writes: write beside the target, then rename over it, so a reader (or a crash)
never sees half a file.

`replacing` is the one way to do it for whatever writes the file (a tool, tarfile, a build); the
``write_*_atomic`` helpers use it for bytes, text and JSON.

>>> import tempfile
>>> target = Path(tempfile.mkdtemp()) / "report.txt"
>>> with replacing(target) as tmp:
...     _ = tmp.write_text("whole")
>>> target.read_text(), [p.name for p in target.parent.iterdir()]
('whole', ['report.txt'])
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["replacing", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, so the rename is atomic) to write a file or
    a folder at; when the block ends without an exception it replaces ``path`` (a folder only
    where none is there yet), else it is removed. Two writers at once each get their own."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(3)}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes | Iterable[bytes], *, mode: int = 0o666, sync: bool = False) -> None:
    """Write ``data`` (bytes, or chunks of them: a large file need not be joined in memory first)
    to ``path`` atomically; ``mode`` applies from the first byte (e.g. 0o600 for keys), less the
    umask as for any file (a run's umask makes its files 0640: `share_access`). Nothing is
    left behind on failure; the `OSError` raised names ``path``."""
    try:
        with replacing(path) as tmp, os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as handle:
            if isinstance(data, bytes | bytearray | memoryview):
                handle.write(data)
            else:
                handle.writelines(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as exc:
        _raise_naming(exc, Path(path))


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
