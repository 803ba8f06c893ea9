"""`CacheStore`: partition results on the share, by key, written in packs and checked on read.

Layout under ``<share>/cache/<app>/``::

    packs/<name>.pack, packs/<name>.index   many entries each, written by one worker at once (`packs`)
    3f/3f9a…e1.files-1a2b3c/                the files a partition declared with ``ctx.output()``, if any
    3f/3f9a…e1.entry                        an entry of the older single-file layout: still read

Workers write through `CacheStore.writer` (`EntryWriter`): entries are buffered and flushed as one
pack before the worker reports them. A reader takes one `CacheView` (every index read once) and
loads what it needs pack by pack (`load_many`). A key found in several places (two runs computed it
at once: same key, same content) is served from the first written, except that an entry stored by
``--refresh`` wins over every older one. Every result is checked (size, SHA-256) before it is
unpickled, and each output file when restoring it: anything that does not match is a
`CorruptEntry`, and is never used. Before that, its tag is checked under the owner's key
(`auth`): an entry whose tag does not check is *untrusted* and never unpickled.

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

import os
import pickle
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..atomic import write_bytes_atomic
from . import packs
from .auth import CacheKey, NoKey, untrusted, worker_key
from .entries import ENTRY_SCHEMA, SINGLE_SUFFIX, CorruptEntry, Entry, EntryInfo, check_body, decode_single, sha256_hex
from .tempnames import temp_name

__all__ = ["ENTRY_SCHEMA", "UNLOADABLE", "CacheStore", "CacheView", "CorruptEntry", "Entry", "EntryInfo", "EntryWriter"]

#: in a problem `load_many` gives: the entry is sound (its checksum matches) but this process
#: cannot load its result (most often, a module it lacks): not damage, so it is kept
UNLOADABLE = "a sound entry whose result cannot be loaded here"


def _load_fix(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"install {exc.name.split('.')[0]} in this environment ({sys.executable}); the entry is kept"
    return "load it where the same code and package versions are installed; the entry is kept"


def _unloadable(where: str, key: str, exc: BaseException) -> str:
    """The problem of a sound entry whose result this process cannot unpickle (`UNLOADABLE`)."""
    return f"{where}#{key[:16]}…: {UNLOADABLE} ({type(exc).__name__}: {exc}): {_load_fix(exc)}"


_SUFFIX = SINGLE_SUFFIX
#: `CacheStore.compact`: packs under this many entries are merged, once there are more than `MANY_PACKS`
SMALL_PACK = 1000
MANY_PACKS = 64


@dataclass
class CacheView:
    """The entries of a cache as one listing saw them: key -> where it is.

    A place is the `PackIndex` of a pack entry (``index.position[key]`` says where in it), or the
    path of a single-file entry: one shared object per pack, so a view of 1,000,000 keys is one
    dict, filled at C speed.
    ``problems``: indexes that could not be read (their entries are not served)."""

    places: dict[str, packs.PackIndex | Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __contains__(self, key: str) -> bool:
        return key in self.places

    def __len__(self) -> int:
        return len(self.places)

    def keys(self) -> list[str]:
        return list(self.places)


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
        ``keys`` only when given (so a run holds only what it may use)."""
        wanted = None if keys is None else (keys if isinstance(keys, (set, frozenset)) else set(keys))
        view = CacheView()
        places = view.places
        indexes = []
        for path in packs.list_indexes(self.packs_dir):
            try:
                indexes.append(packs.read_index(path))
            except FileNotFoundError:
                continue  # rewritten by a gc meanwhile: its entries are in the newer pack listed after it
            except CorruptEntry as exc:
                view.problems.append(str(exc))
        # The first written wins: newest first, each older one over it (set operations, no loop
        # per key); single-file entries are older than any pack; then entries stored by --refresh
        # win over every older copy, the newest last.
        for pack in reversed(indexes):
            places.update(dict.fromkeys(pack.position.keys() if wanted is None else pack.position.keys() & wanted, pack))
        for key, single in self._singles(wanted):
            places[key] = single
        for pack in indexes:
            for i in sorted(pack.replaced):
                if wanted is None or pack.keys[i] in wanted:
                    places[pack.keys[i]] = pack
        return view

    def _singles(self, wanted: Any) -> Iterator[tuple[str, Path]]:
        """Single-file entries (the older layout): one listing per prefix folder."""
        try:
            folders = [n for n in os.listdir(self.root) if len(n) == 2]
        except FileNotFoundError:
            return
        for name in sorted(folders):
            try:
                names = os.listdir(self.root / name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in sorted(names):
                if entry.endswith(_SUFFIX) and not entry.startswith("."):
                    key = entry[: -len(_SUFFIX)]
                    if wanted is None or key in wanted:
                        yield key, self.root / name / entry

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
        taken; keys ``view`` does not have are left out. Each pack is read once and, with
        ``touch``, marked used once."""
        loads = pickle.loads
        for source, rows in self._read(view, keys, touch):
            if isinstance(source, packs.PackIndex):
                # what a hit needs, from the pack's columns (`Entry`); the same for all its entries
                # when none differs from the pack's common fields (the usual case)
                pack, where, keys_of, sums, outputs, header = source.pack, str(source.pack), source.keys, source.sha256, \
                    source.outputs, source.header
                kernel = None if source.extra else str(source.common.get("kernel", ""))
                undeclared = None if source.extra else tuple(source.common.get("undeclared") or ())
                for i, body, problem in rows:
                    key = keys_of[i]
                    if body is None:
                        yield key, None, problem
                        continue
                    try:
                        result = loads(body)
                    except Exception as exc:  # noqa: BLE001 - any unpickling failure makes the entry unusable here
                        yield key, None, _unloadable(where, key, exc)
                        continue
                    yield key, Entry(pack, partial(header, i), result, where, sums[i],
                                     str(source.value(i, "kernel", "")) if kernel is None else kernel,
                                     outputs.get(i) or [],
                                     tuple(source.value(i, "undeclared") or ()) if undeclared is None else undeclared), None
                continue
            key, body, where, problem, header_of_single = rows
            if body is None:
                yield key, None, problem
                continue
            try:
                result = loads(body)
            except Exception as exc:  # noqa: BLE001 - as above
                yield key, None, _unloadable(where, key, exc)
                continue
            single = header_of_single
            yield key, Entry(Path(where), partial(dict, single), result, where, str(single.get("sha256", "")),
                             str(single.get("kernel", "")), list(single.get("outputs") or ()),
                             tuple(single.get("undeclared") or ())), None

    def read_raw(self, view: CacheView, keys: Iterable[str], *, touch: bool = False
                 ) -> Iterator[tuple[str, dict[str, Any], bytes | None, str, str | None]]:
        """``(key, header, body, location, problem)``, bodies checked but not unpickled (bundles
        carry them as they are). ``body`` is None with a problem, or when the entry is gone."""
        for source, rows in self._read(view, keys, touch):
            if isinstance(source, packs.PackIndex):
                where = str(source.pack)
                for i, body, problem in rows:
                    yield source.keys[i], source.header(i), body, where, problem
            else:
                key, body, where, problem, header = rows
                yield key, header, body, where, problem

    def _read(self, view: CacheView, keys: Iterable[str], touch: bool) -> Iterator[tuple[Any, Any]]:
        """The entries of ``keys``, checked, a pack at a time: ``(index, [(i, body, problem)])``
        for the entries of a pack (``i`` their positions in it), ``(None, (key, body, location,
        problem, header))`` for a single-file entry. ``body`` is None with a problem, or when
        the entry is gone."""
        by_pack: dict[str, tuple[packs.PackIndex, list[int]]] = {}
        for key in keys:
            place = view.places.get(key)
            if place is None:
                continue
            if isinstance(place, Path):
                yield None, self._read_single(key, place, touch)
                continue
            by_pack.setdefault(place.name, (place, []))[1].append(place.position[key])
        check = self.key.check
        for index, positions in by_pack.values():
            keys_of, sums, tags, outputs = index.keys, index.sha256, index.tags, index.outputs
            where = str(index.pack)
            try:
                checked = list(packs.read_bodies(index, positions))
            except FileNotFoundError:
                yield index, [(i, None, None) for i in positions]
                continue
            # A sealed index authenticates every entry's key, checksum and outputs in one MAC;
            # otherwise (packs gc merged, bundles imported, older caches) each tag is checked.
            if not self.key.check_seal(index.columns_sha256, index.seal):
                checked = [(i, None, untrusted(where, keys_of[i]))  # checked before anything unpickles it
                           if body is not None and not check(keys_of[i], sums[i], outputs.get(i), tags[i]) else (i, body, problem)
                           for i, body, problem in checked]
            yield index, checked
            if touch:
                _touch(index.index)

    def _read_single(self, key: str, path: Path, touch: bool
                     ) -> tuple[str, bytes | None, str, str | None, dict[str, Any]]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return key, None, str(path), None, {}
        try:
            header, body = decode_single(path, data)
            if header.get("key") != key:
                raise CorruptEntry(f"{path}: the header is for key {str(header.get('key'))[:16]}…")
            check_body(str(path), header, body)
        except CorruptEntry as exc:
            return key, None, str(path), str(exc), {}
        if not self.key.check(key, str(header.get("sha256")), header.get("outputs"), header.get("tag")):
            return key, None, str(path), untrusted(str(path), key), header
        if touch:
            _touch(path)
        return key, body, str(path), None, header

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
        """Every entry of this app, unchecked (headers only); unreadable indexes are skipped
        (`view().problems` names them)."""
        view = self.view() if view is None else view
        used: dict[Path, float] = {}
        for key in sorted(view.places):
            place = view.places[key]
            if isinstance(place, Path):
                try:
                    stat = place.stat()
                    with place.open("rb") as handle:
                        header, _ = decode_single(place, handle.readline())
                except (OSError, CorruptEntry):
                    continue
                path, mtime, size = place, stat.st_mtime, int(header.get("size", 0))
            else:
                index, i = place, place.position[key]
                if index.name not in used:
                    try:
                        used[index.name] = index.index.stat().st_mtime
                    except FileNotFoundError:
                        used[index.name] = 0.0
                header = index.header(i)
                path, mtime, size = index.pack, used[index.name], index.sizes[i]
            size += sum(int(o.get("size", 0)) for o in header.get("outputs", ()))
            yield EntryInfo(key, path, size, mtime, header)

    def matching(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix``."""
        return sorted(key for key in self.view().places if key.startswith(prefix))

    def find(self, prefix: str) -> EntryInfo:
        """The entry whose key starts with ``prefix`` (at least 4 characters)."""
        if len(prefix) < 4:
            raise KeyError(f"give at least 4 characters of the key, not {prefix!r}")
        view = self.view()
        matches = [key for key in view.places if key.startswith(prefix)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} entries of {self.root} have a key starting with {prefix!r}")
        wanted = CacheView({matches[0]: view.places[matches[0]]})
        return next(self.entries(wanted))

    @staticmethod
    def header_at(location: str, key: str) -> dict[str, Any] | None:
        """The header of the entry of ``key`` at ``location`` (a run record's: a pack, or a
        ``.entry`` file), if it is still there. A pack rewritten since (by gc, or a bundle import)
        has another name: the key is then looked up in the whole cache."""
        pack = location
        if location.endswith(_SUFFIX):
            key = ""
        try:
            if not key:
                with open(location, "rb") as handle:
                    return decode_single(Path(location), handle.readline())[0]
            index = packs.read_index(Path(pack).with_suffix(packs.INDEX_SUFFIX))
        except FileNotFoundError:
            if not key:
                return None
            place = CacheStore(Path(pack).parent.parent).view({key}).places.get(key)
            if place is None:
                return None
            return _header_of(place, key)
        except (OSError, CorruptEntry, ValueError):
            return None
        return index.header(index.keys.index(key)) if key in index.keys else None

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
        """Copy a partition's declared outputs into a folder of their own, ``<xx>/<key>.files-<token>``
        (built under a ``.tmp-`` name, renamed into place); returns its name and what it holds."""
        if not outputs:
            return None, []
        assert out_dir is not None
        folder = self.root / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        files = f"{key}.files-{os.getpid()}-{secrets.token_hex(4)}"
        staging = folder / temp_name(files)
        described = []
        try:
            for name in outputs:
                data = (out_dir / name).read_bytes()  # a declared output that was never written fails here
                described.append({"path": name, "size": len(data), "sha256": sha256_hex(data)})
                copy = staging / name
                copy.parent.mkdir(parents=True, exist_ok=True)
                try:
                    copy.write_bytes(data)
                except OSError as exc:
                    if exc.filename is not None or exc.errno is None:
                        raise
                    raise OSError(exc.errno, exc.strerror, str(copy)) from exc  # a full share: say where
            os.rename(staging, folder / files)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return files, described

    def discard(self, key: str) -> bool:
        """Remove an entry and its files (a corrupt one, or at `agi cache gc`). True if it existed."""
        return bool(self.discard_many([key]))

    def discard_many(self, keys: Iterable[str]) -> set[str]:
        """Remove every copy of these entries and their output files; returns the keys removed.
        Packs holding them are rewritten without them (never edited in place): one rewrite per
        pack, however many of its entries go."""
        drop = set(keys)
        removed: set[str] = set()
        for key in drop:
            path = self.entry_path(key)
            files = _single_files(path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.add(key)
            if files:
                shutil.rmtree(path.parent / files, ignore_errors=True)
        for index in packs.list_indexes(self.packs_dir):
            try:
                pack = packs.read_index(index)
            except FileNotFoundError:
                continue
            except (CorruptEntry, ValueError):
                continue  # served by nobody; gc removes it
            if drop.isdisjoint(pack.keys):
                continue
            removed |= self._rewrite_without(pack, drop)
        return removed

    def discard_copies(self, copies: Iterable[tuple[str, packs.PackIndex | Path]]) -> set[str]:
        """Remove these copies of entries, each where a view found it (a key and its place), and
        no other copy of the key: a reader that found a copy corrupt must not take a newer copy
        written since (another run's ``--refresh``) with it. One rewrite per pack; a pack
        rewritten meanwhile is left alone (what checks still serves, what does not is never
        served). Returns the keys whose copy was removed."""
        removed: set[str] = set()
        by_pack: dict[Path, set[str]] = {}
        for key, place in copies:
            if isinstance(place, packs.PackIndex):
                by_pack.setdefault(place.index, set()).add(key)
                continue
            files = _single_files(place)
            try:
                place.unlink()
            except FileNotFoundError:
                continue
            removed.add(key)
            if files:
                shutil.rmtree(place.parent / files, ignore_errors=True)
        for index_path, keys in by_pack.items():
            try:
                pack = packs.read_index(index_path)
            except (FileNotFoundError, CorruptEntry):
                continue
            removed |= self._rewrite_without(pack, keys)
        return removed

    def _rewrite_without(self, pack: packs.PackIndex, keys: set[str]) -> set[str]:
        """Rewrite ``pack`` without the entries of ``keys`` and remove their output folders;
        returns the keys whose entry was removed."""
        removed: set[str] = set()
        for i in packs.rewrite_without(pack, keys):
            key = pack.keys[i]
            if key in keys:
                removed.add(key)
            if i in pack.files:
                shutil.rmtree(self.root / key[:2] / pack.files[i], ignore_errors=True)
        return removed

    def clear(self) -> int:
        """Remove every entry of this app; returns how many there were."""
        count = len(self.view()) if self.root.is_dir() else 0
        if self.root.is_dir():
            trash = self.root.with_name(f".{self.root.name}.removing-{secrets.token_hex(4)}")
            os.rename(self.root, trash)  # one step: no run sees half a cache
            shutil.rmtree(trash, ignore_errors=True)
        return count

    def migrate_singles(self) -> int:
        """Move the single-file entries that check into one pack (their output folders stay where
        they are), then remove those files; returns how many moved. The pack is in place before any
        file goes, so a reader finds each entry throughout."""
        view = self.view()
        singles = [key for key, place in view.places.items() if isinstance(place, Path)]
        writer = packs.PackWriter(self.packs_dir, prefix="0" * 16)  # sorts before every pack written since
        moved: list[Path] = []
        used = 0.0
        for key, header, body, where, problem in self.read_raw(view, singles):
            if body is None or problem is not None:
                continue
            meta = {k: v for k, v in header.items()
                    if k not in ("schema", "key", "partition", "created", "size", "sha256", "outputs", "files", "tag")}
            writer.add(key, body, partition=str(header.get("partition", "")), created=header.get("created"),
                       outputs=header.get("outputs") or [], files=header.get("files"), tag=header.get("tag"), **meta)
            moved.append(Path(where))
            try:
                used = max(used, Path(where).stat().st_mtime)
            except FileNotFoundError:
                pass
        writer.flush()
        for pack in writer.written:
            os.utime(pack.with_suffix(packs.INDEX_SUFFIX), (used, used))  # their last use, not the migration's
        for path in moved:
            path.unlink(missing_ok=True)
        return len(moved)


    def compact(self, *, small: int = SMALL_PACK, most: int = MANY_PACKS) -> int:
        """Merge runs of consecutive small packs (under ``small`` entries) once there are more than
        ``most`` packs: every run reads every index, so many tiny packs would cost a file read per
        entry again. Returns how many packs were merged away."""
        indexes = []
        for path in packs.list_indexes(self.packs_dir):
            try:
                indexes.append(packs.read_index(path))
            except (FileNotFoundError, CorruptEntry):
                indexes.append(None)  # a damaged index breaks a run: what is on each side of it is not merged together
        if len(indexes) <= most:
            return 0
        merged, run = 0, []
        for index in [*indexes, None]:
            if index is not None and len(index.keys) < small and sum(len(i.keys) for i in run) + len(index.keys) <= small * 8 \
                    and sum(sum(i.sizes) for i in (*run, index)) <= packs.MAX_PACK_BYTES:
                run.append(index)
                continue
            if len(run) > 1 and packs.merge(run):
                merged += len(run) - 1
            run = [index] if index is not None and len(index.keys) < small else []
        return merged


class EntryWriter:
    """Entries of one worker, buffered and written as one pack by `flush`.

    `add` pickles the result and copies the output files at once (so a result that cannot be
    pickled, or an output never written, fails that partition's store, not the batch); `flush`
    must run before the worker reports the partitions as stored. A pack that fills up
    (``max_bytes``, ``max_entries``) is written by the `add` that would overflow it: if that
    write fails, the error is not that partition's, so it is kept in `failed` (by the pack's
    location, which `add` returned for each of its entries) for the worker to report with the
    entries it concerns (`take_failures`)."""

    def __init__(self, store: CacheStore, *, max_bytes: int = packs.MAX_PACK_BYTES,
                 max_entries: int = packs.MAX_PACK_ENTRIES) -> None:
        self.store = store
        self._tag = store.key.tag  # raises `auth.CacheKeyError` for a store without the key: nothing is stored untagged
        # `add_result` decides when a pack is full; each pack is sealed: this writer tagged every entry itself
        self._packs = packs.PackWriter(store.packs_dir, max_bytes=1 << 62, max_entries=1 << 62, seal=store.key.seal)
        self._max_bytes, self._max_entries = max_bytes, max_entries
        self._files: list[tuple[str, str]] = []  # (key, output folder) of the buffered entries
        self.failed: dict[str, BaseException] = {}  # a full pack's location -> why writing it failed

    def __len__(self) -> int:
        return len(self._packs)

    def add(self, key: str, result: Any, *, partition: str, out_dir: Path | None = None, outputs: Sequence[str] = (),
            replace: bool = False, **meta: Any) -> str:
        """Buffer one entry; returns its location (``<pack>#<key>``), valid once flushed.
        ``meta``: run_id, kernel, worker…, kept once per pack where entries agree."""
        return self.add_result(key, result, partition, meta, out_dir=out_dir, outputs=outputs, replace=replace)

    def add_result(self, key: str, result: Any, partition: str, meta: dict[str, Any], *, out_dir: Path | None = None,
                   outputs: Sequence[str] = (), replace: bool = False) -> str:
        """`add` with ``meta`` as one dict (a worker's per-partition path)."""
        body = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        digest = sha256_hex(body)
        tag = self._tag(key, digest, None)  # first: a worker without the key buffers and copies nothing
        if len(self._packs) and (self._packs.size + len(body) > self._max_bytes or len(self._packs) >= self._max_entries):
            full = self._packs.location
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the full pack's entries failed, not this one
                self.failed[full] = exc
        if not outputs:
            return self._packs.add_entry(key, body, partition, meta, replace=replace, tag=tag, sha256=digest)
        files, described = self.store.stage_outputs(key, out_dir, outputs)
        self._files.append((key, str(files)))
        return self._packs.add_entry(key, body, partition, meta, replace=replace, outputs=described, files=files,
                                     tag=self._tag(key, digest, described), sha256=digest)

    def take_failures(self) -> dict[str, BaseException]:
        """The full packs whose write failed since the last call (location -> the error)."""
        failed, self.failed = self.failed, {}
        return failed

    @property
    def location(self) -> str:
        """Where the entries buffered now will be (the next `flush`'s pack); "" when none are."""
        return self._packs.location

    def flush(self) -> Path | None:
        """Write the buffered entries as one pack; on failure their output folders are removed too."""
        files, self._files = self._files, []
        try:
            return self._packs.flush()
        except BaseException:
            for key, name in files:
                shutil.rmtree(self.store.root / key[:2] / name, ignore_errors=True)
            raise


def _header_of(place: packs.PackIndex | Path, key: str) -> dict[str, Any] | None:
    if not isinstance(place, Path):
        return place.header(place.position[key])
    try:
        with place.open("rb") as handle:
            return decode_single(place, handle.readline())[0]
    except (OSError, CorruptEntry):
        return None


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only share still serves hits


def _single_files(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return decode_single(path, handle.readline())[0].get("files")
    except (OSError, CorruptEntry):
        return None

