"""`CacheStore`: partition results on the share, by key, written atomically and checked on read.

Layout under ``<share>/cache/<app>/``::

    3f/3f9a…e1.entry          one JSON header line (key, partition, sizes, SHA-256s), then the pickled result
    3f/3f9a…e1.files-1a2b3c/  the files the partition declared with ``ctx.output()``, if any

An entry appears in one step: its output files go to a folder of their own first, then the entry
file is written beside its final name and hard-linked into place, which fails if another run
stored the same key meanwhile (the first writer wins: same key, same content). A reader checks
the result's size and checksum, and each output's when restoring it; anything that does not
match raises `CorruptEntry` and the entry is never used.

>>> import tempfile
>>> store = CacheStore(Path(tempfile.mkdtemp()))
>>> key = "ab" * 32
>>> path = store.put(key, {"answer": 42}, partition="p1")
>>> store.load(key).result
{'answer': 42}
>>> _ = path.write_bytes(path.read_bytes()[:-3])  # damage it
>>> store.load(key)
Traceback (most recent call last):
...
agi_core.cache.store.CorruptEntry: ...: the result has ... bytes, the header says ...
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ENTRY_SCHEMA", "CacheStore", "CorruptEntry", "Entry", "EntryInfo"]

ENTRY_SCHEMA = "agi.cache.v1"
_SUFFIX = ".entry"


class CorruptEntry(Exception):
    """A cache entry that exists but cannot be trusted (cut short, altered, unreadable)."""


@dataclass(frozen=True)
class Entry:
    """A loaded entry: its header and its result."""

    path: Path
    header: dict[str, Any]
    result: Any

    @property
    def outputs(self) -> list[str]:
        return [o["path"] for o in self.header.get("outputs", ())]


@dataclass(frozen=True)
class EntryInfo:
    """An entry as `CacheStore.entries` lists it: no result loaded."""

    key: str
    path: Path
    size: int  # bytes on disk, output files included
    used: float  # last time a run stored or used it (the entry file's mtime)
    header: dict[str, Any]


class CacheStore:
    """The cache of one app: ``<share>/cache/<app>/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_app(cls, share: Path, app: str) -> CacheStore:
        return cls(Path(share) / "cache" / app)

    def entry_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    # -- reading ----------------------------------------------------------------------------

    def existing(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` have an entry (not checked: `load` does that)."""
        wanted = set(keys)
        if len(wanted) < 512:
            return {key for key in wanted if self.entry_path(key).is_file()}
        present: set[str] = set()  # many keys: one listing per prefix folder beats a stat per key
        for prefix in {key[:2] for key in wanted}:
            try:
                names = os.listdir(self.root / prefix)
            except FileNotFoundError:
                continue
            present.update(name[: -len(_SUFFIX)] for name in names if name.endswith(_SUFFIX))
        return wanted & present

    def load(self, key: str, *, touch: bool = True) -> Entry:
        """The entry of ``key``, checked. Raises FileNotFoundError when there is none and
        `CorruptEntry` when it cannot be trusted. ``touch`` marks it used now (for `agi cache gc`)."""
        path = self.entry_path(key)
        data = path.read_bytes()
        header, body = _split(path, data)
        if header.get("key") != key:
            raise CorruptEntry(f"{path}: the header is for key {str(header.get('key'))[:16]}…")
        if len(body) != header.get("size"):
            raise CorruptEntry(f"{path}: the result has {len(body)} bytes, the header says {header.get('size')}")
        if hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise CorruptEntry(f"{path}: the result's checksum does not match its header")
        try:
            result = pickle.loads(body)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure makes the entry unusable
            raise CorruptEntry(f"{path}: the result cannot be unpickled here ({type(exc).__name__}: {exc})") from None
        if touch:
            try:
                os.utime(path)
            except OSError:
                pass  # a read-only share still serves hits
        return Entry(path, header, result)

    def restore(self, entry: Entry, out_dir: Path) -> None:
        """Copy the entry's output files into ``out_dir``, checking each one's size and checksum."""
        files = entry.header.get("files")
        for item in entry.header.get("outputs", ()):
            source = entry.path.parent / str(files) / item["path"]
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise CorruptEntry(f"{entry.path}: output {item['path']} is unreadable ({exc.strerror})") from None
            if len(data) != item["size"] or hashlib.sha256(data).hexdigest() != item["sha256"]:
                raise CorruptEntry(f"{entry.path}: output {item['path']} does not match its checksum")
            target = out_dir / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def entries(self) -> Iterator[EntryInfo]:
        """Every entry of this app, unchecked (headers only); unreadable headers are skipped."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob(f"*{_SUFFIX}")):
                try:
                    stat = path.stat()
                    with path.open("rb") as handle:
                        header = json.loads(handle.readline())
                except (OSError, ValueError):
                    continue
                size = stat.st_size + sum(int(o.get("size", 0)) for o in header.get("outputs", ()))
                yield EntryInfo(path.name[: -len(_SUFFIX)], path, size, stat.st_mtime, header)

    def find(self, prefix: str) -> EntryInfo:
        """The entry whose key starts with ``prefix`` (at least 4 characters)."""
        if len(prefix) < 4:
            raise KeyError(f"give at least 4 characters of the key, not {prefix!r}")
        folder = self.root / prefix[:2]
        matches = sorted(folder.glob(f"{prefix}*{_SUFFIX}")) if folder.is_dir() else []
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} entries of {self.root} have a key starting with {prefix!r}")
        key = matches[0].name[: -len(_SUFFIX)]
        return next(info for info in self._infos([key]))

    def _infos(self, keys: Sequence[str]) -> Iterator[EntryInfo]:
        for key in keys:
            path = self.entry_path(key)
            with path.open("rb") as handle:
                header = json.loads(handle.readline())
            size = path.stat().st_size + sum(int(o.get("size", 0)) for o in header.get("outputs", ()))
            yield EntryInfo(key, path, size, path.stat().st_mtime, header)

    # -- writing ----------------------------------------------------------------------------

    def put(self, key: str, result: Any, *, partition: str, out_dir: Path | None = None, outputs: Sequence[str] = (),
            replace: bool = False, **extra: Any) -> Path:
        """Store a result (and the declared output files, relative to ``out_dir``) under ``key``.

        Returns the entry's path. Without ``replace``, an entry that already exists is kept (it
        holds the same content, by its key); with it (``--refresh``), the new one replaces it.
        """
        body = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        folder = self.root / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{key}{_SUFFIX}"
        if target.exists() and not replace:
            return target
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        files = None
        described = []
        if outputs:
            assert out_dir is not None
            files = f"{key}.files-{token}"
            staging = folder / f".tmp-{files}"
            try:
                for name in outputs:
                    data = (out_dir / name).read_bytes()  # a declared output that was never written fails here
                    described.append({"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
                    copy = staging / name
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    copy.write_bytes(data)
                os.rename(staging, folder / files)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        header = {"schema": ENTRY_SCHEMA, "key": key, "partition": partition, "created": time.time(), "size": len(body),
                  "sha256": hashlib.sha256(body).hexdigest(), "outputs": described, "files": files, **extra}
        tmp = folder / f".tmp-{key}-{token}"
        try:
            with open(tmp, "wb") as handle:
                handle.write(json.dumps(header, separators=(",", ":"), default=str).encode() + b"\n")
                handle.write(body)
            if replace:
                old_files = self._files_of(target)
                os.replace(tmp, target)
                if old_files and old_files != files:
                    shutil.rmtree(folder / old_files, ignore_errors=True)
            else:
                try:
                    os.link(tmp, target)  # never overwrites: the first writer wins
                except FileExistsError:
                    if files:
                        shutil.rmtree(folder / files, ignore_errors=True)
        except BaseException:
            if files:
                shutil.rmtree(folder / files, ignore_errors=True)
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def discard(self, key: str) -> bool:
        """Remove an entry and its files (a corrupt one, or at `agi cache gc`). True if it existed."""
        path = self.entry_path(key)
        files = self._files_of(path)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        if files:
            shutil.rmtree(path.parent / files, ignore_errors=True)
        return True

    def clear(self) -> int:
        """Remove every entry of this app; returns how many there were."""
        count = sum(1 for _ in self.root.glob(f"*/*{_SUFFIX}")) if self.root.is_dir() else 0
        if self.root.is_dir():
            trash = self.root.with_name(f".{self.root.name}.removing-{secrets.token_hex(4)}")
            os.rename(self.root, trash)  # one step: no run sees half a cache
            shutil.rmtree(trash, ignore_errors=True)
        return count

    @staticmethod
    def _files_of(path: Path) -> str | None:
        try:
            with path.open("rb") as handle:
                return json.loads(handle.readline()).get("files")
        except (OSError, ValueError):
            return None


def _split(path: Path, data: bytes) -> tuple[dict[str, Any], bytes]:
    end = data.find(b"\n")
    if end < 0:
        raise CorruptEntry(f"{path}: no header line")
    try:
        header = json.loads(data[:end])
    except ValueError:
        raise CorruptEntry(f"{path}: the header is not JSON") from None
    if not isinstance(header, dict) or header.get("schema") != ENTRY_SCHEMA:
        raise CorruptEntry(f"{path}: not a cache entry of schema {ENTRY_SCHEMA}")
    return header, data[end + 1:]
