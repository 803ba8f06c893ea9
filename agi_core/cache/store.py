"""`CacheStore`: partition results on the share, by key, written in packs and checked on read.

Layout under ``<share>/cache/<app>/``::

    packs/<name>.pack, packs/<name>.index   many entries each, written by one worker at once (`packs`)
    3f/3f9a…e1.files-1a2b3c/                the files a partition declared with ``ctx.output()``, if any
    3f/3f9a…e1.entry                        an entry of the older single-file layout: still read

Workers write through `CacheStore.writer` (`EntryWriter`): entries are buffered and flushed as one
pack before the worker reports them. A reader takes one `CacheView` (every index read once) and
loads what it needs pack by pack (`load_many`; the read path itself is `loading`). A key found in
several places (two runs computed it at once: same key, same content) is served from the first
written, except that an entry stored by ``--refresh`` wins over every older one. Every result is
checked (size, SHA-256) before it is unpickled, and each output file when restoring it: anything
that does not match is a `CorruptEntry`, and is never used. Before that, its tag is checked under
the owner's key (`auth`): an entry whose tag does not check is *untrusted* and never unpickled.

>>> import tempfile
>>> from agi_core.cache.auth import CacheKey
>>> store = CacheStore(Path(tempfile.mkdtemp()), key=CacheKey(bytes(32)))
>>> key = "ab" * 32
>>> path = store.put(key, {"answer": 42}, partition="p1")
>>> store.load(key).result
{'answer': 42}
>>> _ = path.write_bytes(path.read_bytes()[:-3])  # damage it
>>> store.load(key)
Traceback (most recent call last):
...
agi_core.cache.entries.CorruptEntry: ...: the pack is cut short (...)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..base.atomic import write_bytes_atomic
from . import listing, loading, packs, pruning
from .auth import CacheKey, NoKey, worker_key
from .entries import (
    ENTRY_SCHEMA,
    SINGLE_SUFFIX,
    UNLOADABLE,
    CorruptEntry,
    Entry,
    EntryInfo,
    sha256_hex,
)
from .views import CacheView, read_view
from .writer import EntryWriter, stage_outputs

__all__ = ["ENTRY_SCHEMA", "UNLOADABLE", "CacheStore", "CacheView", "CorruptEntry", "Entry", "EntryInfo", "EntryWriter"]

_SUFFIX = SINGLE_SUFFIX



class CacheStore:
    """The cache of one app: ``<share>/cache/<app>/``.

    ``key``: what entries are tagged and checked with (`auth`); by default this user's key as a
    worker finds it (`auth.worker_key`: never made here), read when first needed."""

    def __init__(self, root: Path, *, key: CacheKey | NoKey | None = None) -> None:
        self.root = Path(root)
        self._key = key

    @classmethod
    def for_app(cls, share: Path, app: str, *, key: CacheKey | NoKey | None = None) -> CacheStore:
        return cls(Path(share) / "cache" / app, key=key)

    @property
    def key(self) -> CacheKey | NoKey:
        if self._key is None:
            self._key = worker_key()
        return self._key

    @property
    def packs_dir(self) -> Path:
        return self.root / packs.PACKS

    def entry_path(self, key: str) -> Path:
        """Where a single-file (older layout) entry of ``key`` is."""
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    # -- reading ----------------------------------------------------------------------------

    def view(self, keys: Iterable[str] | None = None) -> CacheView:
        """Read every index once (and list the single-file entries): where each key is, for
        ``keys`` only when given (so a run holds only what it may use: `views.read_view`)."""
        return read_view(self.root, keys)

    def existing(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` have an entry (not checked: `load` does that)."""
        return set(self.view(set(keys)).places)

    def load(self, key: str, *, touch: bool = True) -> Entry:
        """The entry of ``key``, checked. Raises FileNotFoundError when there is none and
        `CorruptEntry` when it cannot be trusted. ``touch`` marks it used now (for `agi cache gc`)."""
        for _, entry, problem in self.load_many(self.view({key}), [key], touch=touch):
            if problem is not None:
                raise CorruptEntry(problem)
            if entry is not None:
                return entry
        raise FileNotFoundError(f"no cache entry of key {key[:16]}… in {self.root}")

    def load_many(self, view: CacheView, keys: Iterable[str], *, touch: bool = True
                  ) -> Iterator[tuple[str, Entry | None, str | None]]:
        """``(key, entry, None)`` for each of ``keys`` that loads and checks, ``(key, None, why)``
        for one that cannot be trusted, ``(key, None, None)`` for one gone since ``view`` was
        taken; keys ``view`` does not have are left out (`loading.load_many`)."""
        return loading.load_many(self, view, keys, touch=touch)

    def read_raw(self, view: CacheView, keys: Iterable[str], *, touch: bool = False
                 ) -> Iterator[tuple[str, dict[str, Any], bytes | None, str, str | None]]:
        """``(key, header, body, location, problem)``, bodies checked but not unpickled (`loading.read_raw`)."""
        return loading.read_raw(self, view, keys, touch=touch)

    def restore(self, entry: Entry, out_dir: Path | None) -> None:
        """Copy the entry's output files into ``out_dir``, checking each one's size and checksum
        (``out_dir`` None: check them only). Each file is written beside its name and renamed: an
        `OSError` (a full or read-only out/) leaves no partial file, and names the file."""
        for item in entry.described:
            source = entry.files_dir / item["path"]
            where = entry.location or entry.path
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise CorruptEntry(f"{where}: output {item['path']} is unreadable ({exc.strerror})") from None
            if len(data) != item["size"] or sha256_hex(data) != item["sha256"]:
                raise CorruptEntry(f"{where}: output {item['path']} does not match its checksum")
            if out_dir is None:
                continue
            target = out_dir / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(target, data)  # a full disk leaves no truncated file in out/

    def entries(self, view: CacheView | None = None) -> Iterator[EntryInfo]:
        """Every entry of this app, unchecked (headers only: `listing.entries`)."""
        return listing.entries(self, view)

    def matching(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix``."""
        return listing.matching(self, prefix)

    def find(self, prefix: str) -> EntryInfo:
        """The entry whose key starts with ``prefix`` (at least 4 characters: `listing.find`)."""
        return listing.find(self, prefix)

    header_at = staticmethod(listing.header_at)

    # -- writing ----------------------------------------------------------------------------

    def writer(self) -> EntryWriter:
        """A batched writer: `EntryWriter.add` many entries, `EntryWriter.flush` them as one pack."""
        return EntryWriter(self)

    def put(self, key: str, result: Any, *, partition: str, out_dir: Path | None = None, outputs: Sequence[str] = (),
            replace: bool = False, **extra: Any) -> Path:
        """Store one result now (and the declared output files, relative to ``out_dir``) under ``key``.

        Returns the file that holds it. Without ``replace``, an entry that already exists is kept
        (it holds the same content, by its key); with it (``--refresh``), the new one wins.
        Many entries: use `writer`, which costs one pack for all of them."""
        if not replace:
            place = self.view({key}).places.get(key)
            if place is not None:
                return place if isinstance(place, Path) else place.pack
        writer = self.writer()
        location = writer.add(key, result, partition=partition, out_dir=out_dir, outputs=outputs, replace=replace, **extra)
        writer.flush()
        return Path(location.split("#", 1)[0])

    def stage_outputs(self, key: str, out_dir: Path | None, outputs: Sequence[str]) -> tuple[str | None, list[dict[str, Any]]]:
        """Copy a partition's declared outputs into a folder of their own (`writer.stage_outputs`)."""
        return stage_outputs(self.root, key, out_dir, outputs)

    def discard(self, key: str) -> bool:
        """Remove an entry and its files (a corrupt one, or at `agi cache gc`). True if it existed."""
        return bool(self.discard_many([key]))

    def discard_many(self, keys: Iterable[str]) -> set[str]:
        """Remove every copy of these entries and their output files; returns the keys removed (`pruning.discard_many`)."""
        return pruning.discard_many(self, keys)

    def discard_copies(self, copies: Iterable[tuple[str, packs.PackIndex | Path]]) -> set[str]:
        """Remove these copies of entries, each where a view found it, and no other copy (`pruning.discard_copies`)."""
        return pruning.discard_copies(self, copies)

    def clear(self) -> int:
        """Remove every entry of this app; returns how many there were."""
        return pruning.clear(self)

    def migrate_singles(self) -> int:
        """Move the single-file entries that check into one pack (`pruning.migrate_singles`)."""
        return pruning.migrate_singles(self)

    def compact(self, *, small: int = pruning.SMALL_PACK, most: int = pruning.MANY_PACKS) -> int:
        """Merge runs of consecutive small packs (`pruning.compact`); returns how many packs were merged away."""
        return pruning.compact(self, small=small, most=most)
