"""Declared input files in cache keys: the state of each file a partition reads, stamped by the manager.

A partition names its input files or folders with ``Partition(inputs=(...))``. Before anything
runs, the manager stamps each one, and the stamps enter the partition's cache key, so an edited,
truncated or replaced input recomputes exactly the partitions that declared it (and their
dependants). Two ways to stamp a file, chosen by ``[cache] inputs``:

- ``"stamp"`` (the default): its size and modification time, in nanoseconds. Cheap (one
  ``stat``), and what Nextflow and make trust. A rewrite that keeps both (same size, mtime reset
  by hand, or within the timestamp resolution of the share) is not seen.
- ``"hash"``: its size and the SHA-256 of its content. A ``touch`` alone recomputes nothing. Hashes
  are memoised on the share (``<share>/cache/<app>/input-hashes.json``, by path, size,
  modification time and inode), so an unchanged file is read once, whatever the number of runs.

A folder is its sorted listing (recursive) plus each file's stamp: adding, removing or changing
a file inside it changes the folder's stamp. A relative path is relative to the share (the
``workers_data_path``, which every node sees at the same path), so a share moved with its data
(``rsync -a``, which keeps modification times) keeps its keys; an absolute path is keyed as written.

>>> import tempfile
>>> share = Path(tempfile.mkdtemp())
>>> _ = (share / "a.txt").write_text("hello")
>>> stamps = InputStamper(share, mode="hash").stamp(["a.txt"])
>>> stamps["a.txt"][:20]
'5:sha256=2cf24dba5fb'
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from ..base.atomic import write_text_atomic
from ..base.errors import PlanError

__all__ = ["HASHES_FILE", "InputStamper", "check_inputs", "describe_change", "folder_entries", "missing_inputs", "resolve_input"]

#: where content hashes are memoised, in the app's cache folder
HASHES_FILE = "input-hashes.json"


def resolve_input(path: str, base: Path) -> Path:
    """The file a declared input names: relative paths are relative to ``base`` (the share)."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def missing_inputs(partitions: Iterable[tuple[str, tuple[str, ...]]], base: Path) -> list[tuple[str, str]]:
    """(partition id, path) of every declared input that does not exist, in plan order."""
    seen: dict[str, bool] = {}
    missing = []
    for pid, inputs in partitions:
        for path in inputs:
            exists = seen.get(path)
            if exists is None:
                exists = seen[path] = resolve_input(path, base).exists()
            if not exists:
                missing.append((pid, path))
    return missing


def check_inputs(partitions: Iterable[tuple[str, tuple[str, ...]]], base: Path) -> None:
    """Raise a `PlanError` naming the partition and the path of each missing declared input."""
    missing = missing_inputs(partitions, base)
    if missing:
        shown = "; ".join(f"partition '{pid}' declares input {path!r} ({resolve_input(path, base)})" for pid, path in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise PlanError(f"missing input file(s): {shown}{more}",
                        fix="create the file, or correct Partition(inputs=...) in App.plan() (relative paths are "
                            f"relative to the share, {base})")


class InputStamper:
    """Stamps declared inputs for one plan; each path is looked at once however many partitions
    declare it. ``stamp(paths)`` returns path → stamp for each path and, for a folder, for each
    file inside it (``folder/name``); a folder's own stamp is ``folder:`` and its listing's digest."""

    def __init__(self, base: Path, *, mode: Literal["stamp", "hash"] = "stamp", hashes_file: Path | None = None) -> None:
        self.base = Path(base)
        self.mode = mode
        self.hashes_file = hashes_file
        self.stamps: dict[str, str] = {}
        self._memo: dict[str, list[object]] | None = None
        self._memo_changed = False
        self.hashed_bytes = 0  # content read to hash (0 when every hash came from the memo)

    def stamp(self, paths: Iterable[str]) -> dict[str, str]:
        for path in paths:
            if path not in self.stamps:
                self._stamp(path)
        return self.stamps

    def digest(self, inputs: tuple[str, ...]) -> str:
        """The digest of one partition's declared inputs (already stamped), order-independent."""
        h = hashlib.sha256()
        for path in sorted(set(inputs)):
            h.update(path.encode() + b"\0" + self.stamps[path].encode() + b"\0")
        return h.hexdigest()[:32]

    def _stamp(self, path: str) -> None:
        target = resolve_input(path, self.base)
        try:
            info = target.stat()
        except FileNotFoundError:
            relative = "" if Path(path).expanduser().is_absolute() else \
                f" (a relative path is relative to the share, {self.base}: declare an absolute path, e.g. str(Path(...).resolve()), " \
                "for a file elsewhere)"
            raise PlanError(f"input {path!r} ({target}) does not exist",
                            fix=f"create it, or correct Partition(inputs=...) in App.plan(){relative}") from None
        if not target.is_dir():
            self.stamps[path] = self._file_stamp(target, info)
            return
        listing = []
        for root, dirs, files in os.walk(target):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                inside = f"{path.rstrip('/')}/{full.relative_to(target).as_posix()}"
                try:
                    stamp = self._file_stamp(full, full.stat())
                except FileNotFoundError:
                    continue  # removed while we looked: not part of the listing
                self.stamps[inside] = stamp
                listing.append(f"{inside}\0{stamp}")
        self.stamps[path] = "folder:" + hashlib.sha256("\n".join(listing).encode()).hexdigest()[:32]

    def _file_stamp(self, target: Path, info: os.stat_result) -> str:
        if self.mode == "stamp":
            return f"{info.st_size}:mtime={info.st_mtime_ns}"
        memo = self._load_memo()
        where = str(target.resolve())
        known = memo.get(where)
        state = [info.st_size, info.st_mtime_ns, info.st_ino]
        if known is not None and known[:3] == state:
            return f"{info.st_size}:sha256={known[3]}"
        with target.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        self.hashed_bytes += info.st_size
        memo[where] = [*state, digest]
        self._memo_changed = True
        return f"{info.st_size}:sha256={digest}"

    def _load_memo(self) -> dict[str, list[object]]:
        if self._memo is None:
            self._memo = _read_memo(self.hashes_file) if self.hashes_file else {}
        return self._memo

    def save(self) -> None:
        """Keep the hashes computed in this plan on the share (merged with what other runs added
        meanwhile; a lost race only costs hashing a file again, never a wrong stamp: each
        memoised hash is checked against the file's size, modification time and inode)."""
        if not (self._memo_changed and self.hashes_file and self._memo is not None):
            return
        merged = {**_read_memo(self.hashes_file), **self._memo}
        try:
            self.hashes_file.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.hashes_file, json.dumps(merged, separators=(",", ":")))
        except OSError:
            pass  # a read-only share: hashes are computed again next time
        self._memo_changed = False


def _read_memo(path: Path) -> dict[str, list[object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def folder_entries(stamps: Mapping[str, str], folder: str) -> dict[str, str]:
    """The stamps of the files inside declared folder ``folder``."""
    prefix = folder.rstrip("/") + "/"
    return {path: stamp for path, stamp in stamps.items() if path.startswith(prefix)}


def describe_change(path: str, before: str | None, after: str | None) -> str:
    """One line on how an input changed: ``input data/f003.txt changed: size 2204 → 2231``."""
    if before is None:
        return f"input {path} is new"
    if after is None:
        return f"input {path} is gone"
    old_size, _, old_rest = before.partition(":")
    new_size, _, new_rest = after.partition(":")
    if before.startswith("folder:") or after.startswith("folder:"):
        return f"input folder {path} changed"
    if old_size != new_size:
        return f"input {path} changed: size {old_size} → {new_size}"
    if old_rest.startswith("mtime=") and new_rest.startswith("mtime="):
        return f"input {path} changed: same size, modified at {_when(new_rest)} (was {_when(old_rest)})"
    if old_rest.startswith("sha256=") and new_rest.startswith("sha256="):
        return f"input {path} changed: same size, content sha256 {old_rest[7:19]}… → {new_rest[7:19]}…"
    return f"input {path} changed: it was stamped another way ({old_rest.split('=')[0]} → {new_rest.split('=')[0]})"


def _when(mtime: str) -> str:
    from datetime import datetime

    stamp = int(mtime.removeprefix("mtime=")) / 1e9
    return datetime.fromtimestamp(stamp).isoformat(sep=" ", timespec="microseconds")
