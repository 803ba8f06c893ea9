"""Results a worker could not store in the cache: how a partition's note says so, and how a run
counts them and says it once (``N results not cached: <reason>``).

A failed store is never the partition's failure: the result is good, it reaches the manager.
But on a full share (ENOSPC) or a read-only cache folder (EROFS) every partition fails to store,
and every later run and ``--resume`` computes everything again: the run must say so out loud.
A worker notes each failure with `failure_note` (the cause, its errno name and the folder it
could not write); the run counts the notes of its outcomes (`tally`) into one warning, or, with
``--require-cache`` (``[cache] require``), one error (`CacheWrites.error`).

>>> err = OSError(28, "No space left on device", "/share/cache/toy/packs/.tmp-1@h@x.pack")
>>> note = failure_note(err)
>>> note
'not cached: the cache write failed: ENOSPC (No space left on device) in /share/cache/toy/packs'
>>> class O:
...     status, note = "ok", "no GPU on h2: ran the CPU kernels; " + note
>>> writes = tally([O(), O()])
>>> writes.summary()
'2 results not cached: ENOSPC (No space left on device) in /share/cache/toy/packs'
"""

from __future__ import annotations

import errno
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["STORE_FAILED", "CacheWrites", "describe", "failure_note", "reason_of", "tally"]

#: how a partition's note starts when its result could not be stored (the rest is `describe`'s)
STORE_FAILED = "not cached: the cache write failed: "
_SEPARATOR = "; "  # between the notes of one outcome (executors.NOTE_SEPARATOR)
_OS_REASON = re.compile(r"^(E[A-Z0-9]+) \((.*)\)(?: in (.*))?$")


class _Noted(Protocol):
    status: str
    note: str


def describe(exc: BaseException) -> str:
    """The cause of a failed store in one line: ``EROFS (Read-only file system) in FOLDER`` for
    an OS error (the folder of the file it could not write: a temporary file's own name means
    nothing once it is gone), else ``TYPE: message`` (e.g. a result that cannot be pickled)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, f"errno {exc.errno}")
        where = f" in {_folder(os.fspath(exc.filename))}" if exc.filename else ""
        text = f"{name} ({exc.strerror or os.strerror(exc.errno)}){where}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()).replace(_SEPARATOR, ", ")  # one line, and never split as two notes


def _folder(path: str) -> str:
    """The folder of ``path`` outside any temporary folder (a staging folder is gone by now)."""
    folder = os.path.dirname(path)
    while os.path.basename(folder).startswith(".tmp-"):
        folder = os.path.dirname(folder)
    return folder


def failure_note(exc: BaseException) -> str:
    """The note of a partition whose result could not be stored because of ``exc``."""
    return f"{STORE_FAILED}{describe(exc)}"


def reason_of(note: str) -> str | None:
    """The cause in an outcome's note, when its result could not be stored; else None."""
    start = note.find(STORE_FAILED)
    if start < 0:
        return None
    rest = note[start + len(STORE_FAILED):]
    return rest.split(_SEPARATOR, 1)[0]


@dataclass
class CacheWrites:
    """How many results of a run could not be stored, by cause (most common first). A cause is
    the error without its folder (a full share fails in ``packs/`` and in each key's folder
    alike); ``examples`` keeps the first full reason of each."""

    causes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, count: int = 1) -> None:
        cause = reason.split(" in /", 1)[0] if _OS_REASON.match(reason) else reason
        self.causes[cause] += count
        self.examples.setdefault(cause, reason)

    @property
    def count(self) -> int:
        return sum(self.causes.values())

    def __bool__(self) -> bool:
        return bool(self.causes)

    @property
    def reason(self) -> str:
        """The most common cause, as it was first seen (of equally common ones, the first seen)."""
        return self.examples[self.causes.most_common(1)[0][0]] if self.causes else ""

    def summary(self) -> str:
        """``N results not cached: <the most common cause>`` (and how many other causes)."""
        count, others = self.count, len(self.causes) - 1
        return (f"{count} result{'s' if count != 1 else ''} not cached: {self.reason}"
                + (f" (and {others} other cause{'s' if others != 1 else ''})" if others > 0 else ""))

    def warning(self) -> str:
        """The record's warning: what happened, what it costs, and what to do."""
        return (f"{self.summary()}: later runs and --resume compute them again; {self.fix()} "
                "(agi run --require-cache makes this an error)")

    def error(self, cache_dir: Path) -> str:
        """The message of a run that had to store every result (``--require-cache``)."""
        return (f"--require-cache: {self.count} result{'s' if self.count != 1 else ''} could not be stored in the cache "
                f"folder {cache_dir}: {self.reason}")

    def fix(self) -> str:
        """What to do about the most common cause."""
        match = _OS_REASON.match(self.reason)
        name, folder = (match[1], match[3] or "the cache folder") if match else ("", "the cache folder")
        if name in ("ENOSPC", "EDQUOT"):
            return (f"free space on the file system of {folder} (agi cache gc --max-size SIZE removes old entries) "
                    "or raise its quota")
        if name == "EROFS":
            return f"mount {folder} read-write (or point [cluster] workers_data_path at a writable share)"
        if name in ("EACCES", "EPERM"):
            return f"give the user the workers run as write access to {folder}"
        if match:
            return f"check the file system of {folder} (the error is {name})"
        return "make work() return a result that pickle can store (see the partitions' notes: agi runs show RUN --all)"


def tally(outcomes: Iterable[_Noted]) -> CacheWrites:
    """Count the outcomes whose result could not be stored, by cause: partitions that succeeded
    only (one that failed afterwards, e.g. its result could not travel back, says so itself)."""
    notes = Counter(o.note for o in outcomes if o.note and o.status == "ok")  # one parse per distinct note, not per outcome
    reasons: Counter[str] = Counter()
    for note, count in notes.items():
        reason = reason_of(note)
        if reason is not None:
            reasons[reason] += count
    writes = CacheWrites()
    for reason, count in reasons.items():
        writes.add(reason, count)
    return writes
