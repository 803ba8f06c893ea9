"""`export_run`: a run folder (and, with ``--with-cache``, the cache entries it used) packed into one
checksummed, optionally signed ``.tar.gz``, written under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..base.atomic import replacing
from ..base.errors import AgiError
from ..cache.entries import encode_single
from .bundle_layout import CHUNK, PUB_FILE, RUN_FILES, SIG_FILE, SUMS_FILE
from .signing import load_private_key, openssh_public

if TYPE_CHECKING:
    from .model import RunRecord

__all__ = ["ExportResult", "export_run"]


@dataclass
class ExportResult:
    path: Path
    files: int
    size: int
    entries: int = 0  # cache entries included
    missing_entries: list[str] = field(default_factory=list)  # entries the record names that are gone (gc)
    signed: bool = False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files_of(run_dir: Path, record: RunRecord, with_cache: bool) -> tuple[dict[str, Path | bytes], int, list[str]]:
    """Archive name → file on disk (or its bytes); the number of cache entries; the entries that are gone."""
    files: dict[str, Path | bytes] = {}
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_file() and not path.is_symlink():
            files[f"run/{name}"] = path
    out = run_dir / "out"
    if out.is_dir():
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.is_symlink():
                files[f"run/out/{path.relative_to(out).as_posix()}"] = path
    entries, missing = 0, []
    if with_cache and record.cache:
        entries, missing = _cache_files(Path(record.cache), record, files)
    return files, entries, missing


def _cache_files(root: Path, record: RunRecord, files: dict[str, Path | bytes]) -> tuple[int, list[str]]:
    """Add the cache entries the run used or stored to ``files`` as single-file entries
    (``cache/<xx>/<key>.entry``, checked on the way) with their output folders; returns how many,
    and the locations that are gone or no longer check."""
    from ..cache import CacheStore

    store = CacheStore(root)
    located = {}
    for part in record.partitions:
        location = part.result_location or ""
        if part.cache_key and location.endswith((".pack", ".entry")):
            located.setdefault(part.cache_key, location)
    view = store.view(located)
    missing = [location for key, location in located.items() if key not in view]
    entries = 0
    for key, header, body, _, problem in store.read_raw(view, sorted(located)):
        if body is None:
            missing.append(located[key] + (f" ({problem})" if problem else ""))
            continue
        base = f"cache/{key[:2]}"
        files[f"{base}/{key}.entry"] = encode_single({k: v for k, v in header.items() if k != "tag"}, body)  # tags stay home
        entries += 1
        named = header.get("files")
        if named and "/" not in str(named) and str(named) not in ("..", "."):
            folder = root / key[:2] / str(named)
            for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
                if path.is_file() and not path.is_symlink():
                    files[f"{base}/{named}/{path.relative_to(folder).as_posix()}"] = path
    return entries, missing


class _Hashing:
    """A file object that hashes what is read from it (`tarfile.addfile` reads exactly the size)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def export_run(record: RunRecord, out: Path, *, with_cache: bool = False, sign_key: Path | None = None) -> ExportResult:
    """Pack ``record``'s run folder (and with ``with_cache`` the cache entries it used) into the
    bundle ``out``, with SHA256SUMS and, given ``sign_key``, its Ed25519 signature."""
    if not record.path:
        raise AgiError(f"run {record.run_id}: its record was not read from a run folder", fix="export a run read from a share")
    run_dir = Path(record.path).parent
    key = load_private_key(sign_key) if sign_key else None  # fail before writing anything
    files, entries, missing = _files_of(run_dir, record, with_cache)
    out = Path(out)
    sums: list[str] = []
    try:
        with replacing(out) as tmp, tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name, path in files.items():
                if isinstance(path, bytes):  # made here (a cache entry taken out of its pack)
                    tar.addfile(_tarinfo(name, len(path)), io.BytesIO(path))
                    sums.append(f"{hashlib.sha256(path).hexdigest()}  {name}\n")
                    continue
                with open(path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    info = _tarinfo(name, stat.st_size)
                    info.mtime = int(stat.st_mtime)
                    reader = _Hashing(handle)  # the bytes hashed are the bytes packed, read once
                    tar.addfile(info, reader)
                sums.append(f"{reader.digest.hexdigest()}  {name}\n")
            text = "".join(sorted(sums, key=lambda line: line[66:])).encode()
            tar.addfile(_tarinfo(SUMS_FILE, len(text)), io.BytesIO(text))
            if key is not None:
                signature = key.sign(text)
                public = openssh_public(key.public_key())
                tar.addfile(_tarinfo(SIG_FILE, len(signature)), io.BytesIO(signature))
                tar.addfile(_tarinfo(PUB_FILE, len(public)), io.BytesIO(public))
    except OSError as exc:
        raise AgiError(f"cannot write the bundle {out}: {exc.strerror or exc}", fix="check the folder exists and is writable") from None
    return ExportResult(out, len(files), out.stat().st_size, entries, missing, key is not None)
