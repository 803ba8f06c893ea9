"""The keys of a plan keyed before: an unchanged re-run reads them back instead of hashing every
payload again (half a second per 100,000 partitions).

A plan's keys are a function of the cache format, the app's code hash, the kernel kind, the plan's
fingerprint (app, args and every partition: id, payload, deps, reads, declared inputs...), how
inputs are stamped, and the stamps of the declared inputs. The first five name a memo,
``<share>/cache/<app>/keys/<id>.json``: a hard link to the ``cache_keys.json`` of the last run
that keyed that plan. A run whose plan has the same name re-stamps its declared inputs and
uses the memo only when every stamp is the same; anything else keys the plan from scratch. The
memo is only ever a copy of keys `plan_keys` made: a missing, damaged or foreign one is ignored.

>>> import tempfile
>>> from agi_core.app import Partition
>>> from agi_core.cache import plan_keys
>>> from agi_core.cache.inputs import InputStamper
>>> root = Path(tempfile.mkdtemp())
>>> parts = [Partition("a", payload=1)]
>>> keys = plan_keys(parts, code="c0de", args={}, kernel="python")
>>> memo = KeysMemo(root, memo_id(fingerprint="f1", code="c0de", kernel="python", inputs_mode="stamp"))
>>> _ = (root / "run.json").write_bytes(keys.to_json())
>>> memo.keep(root / "run.json")
>>> memo.find(parts, code="c0de", kernel="python", stamper=InputStamper(root)).keys == keys.keys
True
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from ..app import Partition
from ..base.atomic import replacing
from ..base.errors import PlanError
from .inputs import InputStamper
from .keys import CACHE_FORMAT, RunKeys

__all__ = ["KEEP", "MEMO_DIR", "KeysMemo", "memo_id", "prune_memos"]

MEMO_DIR = "keys"
#: memos kept per app, the most recently keyed (a hard link shares its run's file times): one per
#: plan an app alternates between
KEEP = 16


def memo_id(*, fingerprint: str, code: str, kernel: str, inputs_mode: str) -> str:
    """The name of a plan's keys: everything they are made of, except the input stamps."""
    return hashlib.sha256(f"agi-keys\0{CACHE_FORMAT}\0{code}\0{kernel}\0{inputs_mode}\0{fingerprint}".encode()).hexdigest()


class KeysMemo:
    """The memo of one plan's keys in an app's cache folder."""

    def __init__(self, cache_root: Path, name: str) -> None:
        self.folder = Path(cache_root) / MEMO_DIR
        self.path = self.folder / f"{name}.json"
        self.found: tuple[int, int] | None = None  # (device, inode) of the file `find` read the keys from
        self.text = b""  # that file's bytes: the keys file of a run that used them, where no link can be made

    def find(self, partitions: Sequence[Partition], *, code: str, kernel: str, stamper: InputStamper) -> RunKeys | None:
        """The memo's keys when they are this plan's keys today, else None (key the plan)."""
        try:
            with self.path.open("rb") as handle:
                info = os.fstat(handle.fileno())
                data = handle.read()
            keys = RunKeys.keys_only_from_json(data)  # the parts stay in the file (`link_found` links it)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (keys.format, keys.code, keys.kernel, keys.inputs_mode) != (CACHE_FORMAT, code, kernel, stamper.mode) \
                or len(keys.keys) != len(partitions):
            return None
        declared = {path for part in partitions for path in part.inputs}
        if declared or keys.inputs:
            try:
                stamps = stamper.stamp(declared)
            except PlanError:
                return None  # a missing input: plan_keys says which partition declares it
            if stamps != keys.inputs:
                return None
        self.found = (info.st_dev, info.st_ino)
        self.text = data
        return keys

    def link_found(self, target: Path) -> bool:
        """Hard-link the file `find` read as ``target`` (a run's cache_keys.json); False when that
        file is not the memo any more (another run of the same plan replaced it meanwhile, perhaps
        with other input stamps): then the run writes its own keys."""
        if self.found is None:
            return False
        try:
            os.link(self.path, target)
        except OSError:
            return False
        info = os.stat(target)
        if (info.st_dev, info.st_ino) == self.found:
            return True
        target.unlink()
        return False

    def keep(self, keys_file: Path) -> None:
        """Make ``keys_file`` (a run's cache_keys.json) the memo, by a hard link (no copy), and
        drop the least recently used memos beyond `KEEP`. Best effort: a share without hard
        links only loses the shortcut (a run that used the memo links the same file: nothing changes)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and os.path.samefile(self.path, keys_file):
                return
            with replacing(self.path) as tmp:
                os.link(keys_file, tmp)
            self._prune()
        except OSError:
            pass

    def _prune(self) -> None:
        prune_memos(self.folder, KEEP)


def prune_memos(folder: Path, keep: int) -> None:
    """Drop the least recently used memo files (``*.json``) of ``folder`` beyond ``keep``."""
    memos = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".json") and not entry.name.startswith("."):
            try:
                memos.append((entry.stat().st_mtime, entry.path))
            except FileNotFoundError:
                continue
    for _, path in sorted(memos, reverse=True)[keep:]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
