"""`EntryWriter`: one worker's cache entries, buffered and written as one pack."""

from __future__ import annotations

import os
import pickle
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import packs
from .entries import sha256_hex
from .tempnames import temp_name

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["EntryWriter", "stage_outputs"]


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
        # `add_pickled` decides when a pack is full; each pack is sealed: this writer tagged every entry itself
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
        body = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        return self.add_pickled(key, body, partition, meta, out_dir=out_dir, outputs=outputs, replace=replace)

    def add_pickled(self, key: str, body: bytes, partition: str, meta: dict[str, Any], *, out_dir: Path | None = None,
                    outputs: Sequence[str] = (), replace: bool = False) -> str:
        """`add` of a result already pickled (``pickle.HIGHEST_PROTOCOL``), with ``meta`` as one
        dict: a worker's per-partition path, which sends the same pickle back with the outcome."""
        digest = sha256_hex(body)
        tag = self._tag(key, digest, None)  # first: a worker without the key buffers and copies nothing
        count = len(self._packs)
        if count and (count >= self._max_entries or self._packs.size + len(body) > self._max_bytes):
            full = self._packs.location
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the full pack's entries failed, not this one
                self.failed[full] = exc
        if not outputs:
            return self._packs.add_entry(key, body, partition, meta, replace=replace, tag=tag, sha256=digest)
        files, described = stage_outputs(self.store.root, key, out_dir, outputs)
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


def stage_outputs(root: Path, key: str, out_dir: Path | None, outputs: Sequence[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """Copy a partition's declared outputs into a folder of their own, ``<xx>/<key>.files-<token>``
    (built under a ``.tmp-`` name, renamed into place); returns its name and what it holds."""
    if not outputs:
        return None, []
    assert out_dir is not None
    folder = root / key[:2]
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
