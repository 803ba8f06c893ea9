"""What a cache entry is, whatever file holds it: `Entry`, `EntryInfo`, `CorruptEntry`, and the
single-file format (``<key>.entry``: one JSON header line, then the pickled result).

The single-file format is how caches were stored before pack files (`agi_core.cache.packs`); it is
still read from a cache, and it is how a bundle carries entries (`agi runs export --with-cache`),
since one file per entry is what a portable archive wants.

>>> data = encode_single({"key": "ab" * 32, "partition": "p1"}, b"body")
>>> header, body = decode_single(Path("x.entry"), data)
>>> header["sha256"] == sha256_hex(b"body"), header["size"], body
(True, 4, b'body')
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ENTRY_SCHEMA", "SINGLE_SUFFIX", "UNLOADABLE", "CorruptEntry", "Entry", "EntryInfo", "check_body", "decode_single",
           "encode_single", "sha256_hex", "unloadable"]

ENTRY_SCHEMA = "agi.cache.v1"
SINGLE_SUFFIX = ".entry"


class CorruptEntry(Exception):
    """A cache entry that exists but cannot be trusted (cut short, altered, unreadable)."""


@dataclass(slots=True)
class Entry:
    """A loaded entry: its result, where it came from, and what a run needs of its header.

    ``path``: the file that holds it (a pack, or a single ``.entry`` file); ``location``: what a
    run's record names (that path, as a string; with the record's ``cache_key`` it names the entry).
    ``sha256``, ``kernel`` and ``described`` (its output files: path, size, sha256) are what a cache
    hit needs, taken straight from the pack's columns; the whole header is built only when asked
    for (``header``): at 100,000 hits, building every header was a tenth of the re-run."""

    path: Path
    header_of: Callable[[], dict[str, Any]] = field(repr=False)
    result: Any
    location: str = ""
    sha256: str = ""
    kernel: str = ""
    described: list[dict[str, Any]] = field(default_factory=list)
    undeclared: tuple[str, ...] = ()  # files its work() read without declaring them, when it was computed
    _header: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def header(self) -> dict[str, Any]:
        if self._header is None:
            self._header = self.header_of()
        return self._header

    @property
    def outputs(self) -> list[str]:
        return [o["path"] for o in self.described]

    @property
    def files_dir(self) -> Path:
        """The folder of its output files (meaningful when it has outputs): beside a single-file
        entry; for a pack entry, in the key's prefix folder of the cache (``packs/`` is beside it)."""
        folder = self.path.parent.parent / str(self.header["key"])[:2] if "pack" in self.header else self.path.parent
        return folder / str(self.header.get("files"))


@dataclass(frozen=True)
class EntryInfo:
    """An entry as `CacheStore.entries` lists it: no result loaded."""

    key: str
    path: Path  # the file that holds it: a pack or a single .entry file
    size: int  # bytes of its result and its output files
    used: float  # last time a run stored or used it (the mtime of its pack's index, or of its .entry file)
    header: dict[str, Any]


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def check_body(where: str, header: dict[str, Any], body: bytes | memoryview) -> None:
    """Raise `CorruptEntry` unless ``body`` has the size and SHA-256 that ``header`` says."""
    if len(body) != header.get("size"):
        raise CorruptEntry(f"{where}: the result has {len(body)} bytes, the header says {header.get('size')}")
    if sha256_hex(body) != header.get("sha256"):
        raise CorruptEntry(f"{where}: the result's checksum does not match its header")


def encode_single(header: dict[str, Any], body: bytes) -> bytes:
    """A single-file entry: ``header`` (schema, size and sha256 filled in) as one JSON line, then ``body``."""
    full = {**header, "schema": ENTRY_SCHEMA, "size": len(body), "sha256": sha256_hex(body)}
    for internal in ("pack", "offset"):
        full.pop(internal, None)
    return json.dumps(full, separators=(",", ":"), default=str).encode() + b"\n" + body


def decode_single(path: Path, data: bytes) -> tuple[dict[str, Any], bytes]:
    """Header and body of a single-file entry; `CorruptEntry` when it is not one (the body is not checked here)."""
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


#: in a problem `CacheStore.load_many` gives: the entry is sound (its checksum matches) but this
#: process cannot load its result (most often, a module it lacks): not damage, so it is kept
UNLOADABLE = "a sound entry whose result cannot be loaded here"


def unloadable(where: str, key: str, exc: BaseException) -> str:
    """The problem of a sound entry whose result this process cannot unpickle (`UNLOADABLE`)."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        fix = f"install {exc.name.split('.')[0]} in this environment ({sys.executable}); the entry is kept"
    else:
        fix = "load it where the same code and package versions are installed; the entry is kept"
    return f"{where}#{key[:16]}…: {UNLOADABLE} ({type(exc).__name__}: {exc}): {fix}"
