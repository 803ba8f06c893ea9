"""Which partitions a Dask task started, kept on the share so that a re-run of the task can tell.

Dask runs a task again when the worker running it is lost (killed, out of memory, its host gone),
and again when a finished task's result is lost with its worker before anyone read it. Each time,
``work()`` runs again for the partitions that had started: a non-idempotent ``work()`` really ran
twice. Only the worker knows how far a batch got, so before each ``work()`` it appends the
partition's index in its batch to the task's *started log* (``<run>/started/<name>``, on the share
every node sees): one unbuffered ``write()``, which the kernel keeps when the process is
SIGKILLed an instant later. The next attempt of the task reads the log before it starts: a
partition named there started before, as many times as it is named, and its ``retries`` say so
exactly; one that never started on the lost worker counts 0.

A re-run also leaves a marker beside its log (``<name>.again``), so the manager reads only the logs
of tasks that ran again (`rerun_counts`, one directory listing however many tasks the run had)
and removes the folder when the run ends (`remove_started`).

The logs are as durable as the share's writes: a host that dies with writes not yet sent to the
file server (NFS sends them on close) takes its last lines with it, and those re-runs count less.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["AGAIN", "STARTED", "StartedLog", "last_started", "log_name", "remove_started", "rerun_counts", "started_dir"]

#: the folder of started logs, in the run folder (beside out/)
STARTED = "started"
#: the suffix of the marker a re-run leaves beside its task's log
AGAIN = ".again"


def started_dir(out_dir: Path) -> Path:
    """The run's folder of started logs: ``out_dir`` is the run's ``out/`` (`JobSpec.out_dir`)."""
    return out_dir.parent / STARTED


def log_name(first: str) -> str:
    """The log's file name for the task whose batch starts with partition ``first``: each
    partition is in one task of a run, so its first one names the task, on every attempt.

    >>> log_name("p0")
    'df79bab7dfc03df2cebb754c'
    """
    return hashlib.blake2b(first.encode(), digest_size=12).hexdigest()


class StartedLog:
    """One attempt of a task at its log: `before` says how often each index started before this
    attempt, `mark` appends one before its ``work()``. Without a log (not a run's task, or the
    share refuses it) nothing is marked and nothing counted: the partitions still run."""

    def __init__(self, fd: int | None, before: Mapping[int, int], lost_in: Mapping[int, int] | None = None) -> None:
        self._fd = fd
        self.before = before
        #: index -> how many earlier attempts were lost while it ran (the last one each started)
        self.lost_in: Mapping[int, int] = lost_in or {}

    @classmethod
    def open(cls, folder: Path, first: str) -> StartedLog:
        """The log of the task whose batch starts with ``first``, in ``folder`` (which the manager
        made: a missing one means the run is over, or this is no run's task, and nothing is logged)."""
        path = folder / log_name(first)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return cls(None, {})
        try:
            before: Mapping[int, int] = {}
            lost_in: Mapping[int, int] = {}
            if os.fstat(fd).st_size:
                data = path.read_bytes()
                before, lost_in = _counts_in(data), _lost_in(data)
            if before:  # this attempt is a re-run: the manager will read this log
                os.close(os.open(f"{path}{AGAIN}", os.O_WRONLY | os.O_CREAT, 0o644))
            os.write(fd, _ATTEMPT)
        except OSError:
            os.close(fd)
            return cls(None, {})
        return cls(fd, before, lost_in)

    def mark(self, index: int) -> int:
        """Note that the batch's partition ``index`` starts now; return how often it started before."""
        fd = self._fd
        if fd is not None:
            try:
                os.write(fd, b"%d\n" % index)
            except OSError:  # e.g. a full share: the partition runs anyway, unlogged
                self.close()
        return self.before.get(index, 0)

    def finish(self) -> None:
        """Note that this attempt ran its whole batch: if the task runs again (its result was
        lost with its worker), none of its partitions is the one a worker was lost in."""
        fd = self._fd
        if fd is not None:
            try:
                os.write(fd, _FINISHED)
            except OSError:
                self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> StartedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: the lines that start an attempt and end one that ran its whole batch (readers of indexes skip them)
_ATTEMPT, _FINISHED = b"-\n", b"=\n"


def _counts(path: Path) -> Counter[int]:
    """Index → how often the log names it (a last line cut short by a kill, or garbage a crashed
    host left, is not counted)."""
    return _counts_in(path.read_bytes())


def _counts_in(data: bytes) -> Counter[int]:
    return Counter(int(line) for line in data[: data.rfind(b"\n") + 1].split() if line.isdigit())


def _lost_in(data: bytes) -> Counter[int]:
    r"""Index → how many attempts of the log ended (their worker lost) while it ran: the last index
    each unfinished attempt started. An attempt that ran its whole batch blames none.

    >>> dict(_lost_in(b"-\n0\n1\n-\n0\n1\n-\n0\n1\n2\n=\n"))
    {1: 2}
    """
    lost: Counter[int] = Counter()
    last: int | None = None
    for line in data[: data.rfind(b"\n") + 1].split():
        if line == _ATTEMPT.strip() or line == _FINISHED.strip():
            if last is not None and line == _ATTEMPT.strip():
                lost[last] += 1
            last = None
        elif line.isdigit():
            last = int(line)
    if last is not None:
        lost[last] += 1
    return lost


def last_started(folder: Path, ids: Sequence[str]) -> tuple[str, float] | None:
    """The partition of the batch ``ids`` its task started last, and when (the log's time);
    None when the task has not started one (or keeps no log)."""
    path = folder / log_name(ids[0]) if ids else None
    try:
        with open(path, "rb") as log:  # type: ignore[arg-type]
            size = os.fstat(log.fileno()).st_size
            log.seek(max(0, size - 32))
            lines = log.read().split(b"\n")
            when = os.fstat(log.fileno()).st_mtime
    except (OSError, TypeError):
        return None
    lines = lines[:-1]  # the last item is after the last newline
    if b"-" in lines:  # this attempt's lines only: the earlier attempts' partitions are not running
        lines = lines[len(lines) - lines[::-1].index(b"-"):]
    complete = [line for line in lines if line.isdigit()]
    if not complete or int(complete[-1]) >= len(ids):
        return None
    return ids[int(complete[-1])], when


def rerun_counts(folder: Path, batches: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Partition id → how often it started beyond its first time, read from the logs of the tasks
    that ran again. ``batches``: each task's partition ids in batch order, by its first one."""
    try:
        names = [name[: -len(AGAIN)] for name in os.listdir(folder) if name.endswith(AGAIN)]
    except OSError:
        return {}
    by_log = {log_name(ids[0]): ids for ids in batches.values() if ids}
    retries: dict[str, int] = {}
    for name in names:
        ids = by_log.get(name)
        if ids is None:
            continue
        try:
            counts = _counts(folder / name)
        except OSError:
            continue
        retries.update({ids[index]: count - 1 for index, count in counts.items() if count > 1 and index < len(ids)})
    return retries


def remove_started(folder: Path) -> None:
    """Remove the run's started logs (the run is over: nothing will read them)."""
    shutil.rmtree(folder, ignore_errors=True)
