"""Writing a run's record while it runs, cheaply enough for 100,000 partitions.

The manifest (``manifest.json``) is written whole only at the start and at the end. In between,
partition outcomes are appended to ``partitions.jsonl`` beside it, about once a second, and a
``heartbeat`` file says the manager is alive. A manager killed by SIGKILL thus leaves a record
that holds every partition that finished before the kill, and that readers can tell is
abandoned (see `agi_core.provenance.store`). At the end the log is folded into the manifest and
removed.

A share that fills up (or turns read-only) before the final manifest is written would leave a
record that reads ``running`` and then ``abandoned``, a lie about a manager that hit ENOSPC. So
the first write also reserves ``failure.json``, a small file of blanks: the final write's
failure is written into its blocks in place (`record_failure`; no new block is needed on a full
disk), and readers take it as the run's end (``failed``, with the cause).
"""

from __future__ import annotations

import json
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from ..base.atomic import write_bytes_atomic, write_text_atomic
from ..base.share_io import raise_with_path
from .lines import not_run_line
from .model import RunRecord

__all__ = ["FAILURE_FILE", "HEARTBEAT_FILE", "HEARTBEAT_S", "IN_FLIGHT_FILE", "LOG_FILE", "MANIFEST_FILE", "RecordWriter",
           "read_failure"]

MANIFEST_FILE = "manifest.json"
LOG_FILE = "partitions.jsonl"
HEARTBEAT_FILE = "heartbeat"
IN_FLIGHT_FILE = "in_flight.json"  # the partitions running now, kept by the run's watchdog
HEARTBEAT_S = 2.0  # how often the heartbeat is refreshed and the log flushed
MAX_QUEUED = 20_000  # lines queued for the log before `add` writes them itself
_SPLICE_BYTES = 4 << 20  # of the log, spliced into the manifest at a time
FAILURE_FILE = "failure.json"  # reserved blank at the start; says why the final record could not be written
FAILURE_BYTES = 4096  # one block: what a failure may take, written in place


def read_failure(run_dir: Path) -> dict[str, object] | None:
    """What `RecordWriter.record_failure` wrote in ``run_dir`` (``status``, ``error``, ``ended``
    as a Unix time), or None: no failure file, or still blank."""
    try:
        text = (run_dir / FAILURE_FILE).read_bytes().strip()
    except OSError:
        return None
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class RecordWriter:
    """Keeps a run's record on the share up to date. Use as a context manager around the run."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._lines: list[tuple[str, bytes]] = []  # (partition, line) queued since the last flush
        # `add` runs in the run's thread, `flush` in the heartbeat's: the queue is swapped under its
        # own lock (held for nanoseconds), so no line can be appended to a list already written
        self._queue_lock = threading.Lock()
        # Where each partition's latest line starts in the log: the final record is spliced from
        # the log, so the manager does not hold every line in memory (300 MB at 1,000,000 partitions).
        self._offset_of: dict[str, int] = {}
        self._logged = 0  # lines appended to the log (more than `_offset_of` has when a partition has several)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reserved = False

    @property
    def manifest(self) -> Path:
        return self.run_dir / MANIFEST_FILE

    def write(self, record: RunRecord) -> None:
        """Write the whole manifest atomically (at the start, on phase changes, at the end). The
        first write reserves the failure file first (see the module's docstring)."""
        if not self._reserved:
            try:
                with (self.run_dir / FAILURE_FILE).open("wb") as handle:
                    handle.write(b" " * FAILURE_BYTES)
            except OSError as exc:
                raise_with_path(exc, self.run_dir / FAILURE_FILE)
            self._reserved = True
        write_text_atomic(self.manifest, record.dump_json())

    def record_failure(self, error: str) -> bool:
        """Say in the reserved failure file that the run failed with ``error`` (cut to fit), in
        place: a full share still takes it. False when even that could not be written."""
        data = b""
        for keep in (len(error), 3000, 1000):
            data = json.dumps({"status": "failed", "error": error[:keep], "ended": round(time.time(), 3)}).encode()
            if len(data) <= FAILURE_BYTES:
                break
        try:
            fd = os.open(self.run_dir / FAILURE_FILE, os.O_WRONLY)  # no O_TRUNC: its blocks stay allocated
            try:
                os.pwrite(fd, data.ljust(FAILURE_BYTES), 0)
            finally:
                os.close(fd)
        except OSError:
            return False
        return True

    def add(self, pid: str, line: bytes) -> None:
        """Queue one partition's record line (`lines.partition_line`) for the log; the heartbeat
        thread flushes it, or this call once `MAX_QUEUED` lines wait (100,000 partitions a second
        would otherwise queue 70 MB of lines between beats). The latest line of a partition is
        the one the final record keeps."""
        with self._queue_lock:
            self._lines.append((pid, line))
            full = len(self._lines) >= MAX_QUEUED
        if full and self._thread is not None:
            try:
                self.flush()
            except OSError:  # a share that hiccups: the lines stay queued, the heartbeat tries again
                pass

    def add_many(self, lines: Iterable[tuple[str, bytes]]) -> None:
        """`add` for many partitions at once (the cache hits that start a re-run)."""
        with self._queue_lock:
            self._lines.extend(lines)

    def flush(self) -> None:
        """Append the queued outcomes to the log and refresh the heartbeat. Lines that could not
        be written stay queued for the next flush."""
        with self._lock:
            with self._queue_lock:
                lines, self._lines = self._lines, []
            if lines:
                try:
                    self._append(lines)
                except BaseException:
                    with self._queue_lock:
                        self._lines[:0] = lines
                    raise
            try:
                (self.run_dir / HEARTBEAT_FILE).write_text(f"{time.time():.3f}\n")
            except OSError as exc:
                raise_with_path(exc, self.run_dir / HEARTBEAT_FILE)

    def _append(self, lines: list[tuple[str, bytes]]) -> None:
        try:
            self._append_to_log(lines)
        except OSError as exc:  # a full disk's write names no file
            raise_with_path(exc, self.run_dir / LOG_FILE)

    def _append_to_log(self, lines: list[tuple[str, bytes]]) -> None:
        with (self.run_dir / LOG_FILE).open("ab") as log:
            offset = log.tell()  # the end: a write that failed half-way earlier left bytes no offset points to
            offsets = {}
            for pid, line in lines:
                offsets[pid] = offset
                offset += len(line) + 1
            # joined a few thousand at a time: all at once, 100,000 lines were 3 copies of 37 MB;
            # one write per line, 3x slower
            for first in range(0, len(lines), 4096):
                log.write(b"\n".join([line for _, line in lines[first: first + 4096]]) + b"\n")
        self._offset_of.update(offsets)
        self._logged += len(lines)

    def start_heartbeat(self) -> None:
        """Flush and beat every `HEARTBEAT_S` from a thread, so a long partition running in this
        process (mode 0) does not make the run look dead. Start it after any fork."""
        if self._thread is None:
            self.flush()
            self._thread = threading.Thread(target=self._beat, name="agi-record-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.flush()
            except OSError:  # a share that hiccups: the next beat tries again
                pass

    def finish(self, record: RunRecord, partitions: Iterable[str], slot_of: Callable[[], Mapping[str, str]]) -> None:
        """Stop the heartbeat, write the complete record, and remove the log and heartbeat.

        ``partitions``: the plan's partition ids, in order; those without a line are recorded as
        not run, on their slot (``slot_of()``, asked only when some did not run). The partition list is spliced in from the log, as the JSON
        already made for it, and streamed to the manifest: no model per partition and no copy of
        the whole record in memory, so 1,000,000 partitions cost seconds and little memory.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()  # the lines queued since the last beat go to the log, where the splice reads them
        head = record.model_dump_json(by_alias=True, indent=1, exclude={"partitions"}).encode()
        log_path = self.run_dir / LOG_FILE
        with log_path.open("rb") if log_path.exists() else open(os.devnull, "rb") as log:
            size = os.fstat(log.fileno()).st_size
            view = mmap.mmap(log.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            try:
                write_bytes_atomic(self.manifest, self._spliced(head, view, partitions, slot_of))
            finally:
                if isinstance(view, mmap.mmap):
                    view.close()
        self._offset_of = {}
        for name in (LOG_FILE, HEARTBEAT_FILE, IN_FLIGHT_FILE, FAILURE_FILE):
            try:
                os.unlink(self.run_dir / name)
            except FileNotFoundError:
                pass

    def _spliced(self, head: bytes, log: mmap.mmap | bytes, partitions: Iterable[str],
                 slot_of: Callable[[], Mapping[str, str]]) -> Iterator[bytes]:
        """The manifest in chunks: the record without its partitions, then each partition's
        latest line from the log, in plan order."""
        yield head[: head.rindex(b"}")].rstrip() + b',\n "partitions": [\n  '
        partitions = list(partitions)
        if self._logged and self._logged == len(self._offset_of) == len(partitions) and list(self._offset_of) == partitions:
            # one line per partition, logged in plan order (a re-run of cache hits): the list is the
            # log itself, its line breaks made separators (a loop per line took a tenth of the re-run)
            end = len(log) - 1  # the last line's break closes the list instead
            for first in range(0, end, _SPLICE_BYTES):
                yield log[first: min(first + _SPLICE_BYTES, end)].replace(b"\n", b",\n  ")
                if isinstance(log, mmap.mmap):
                    log.madvise(mmap.MADV_DONTNEED)  # as below: read pages need not stay in this process's memory
            yield b"\n ]\n}\n"
            return
        chunk: list[bytes] = []
        first = True
        done = 0  # chunks yielded
        slots: Mapping[str, str] | None = None
        for pid in partitions:
            offset = self._offset_of.get(pid)
            if offset is not None:
                line = log[offset: log.find(b"\n", offset)]
            else:
                slots = slot_of() if slots is None else slots
                line = not_run_line(pid, slots.get(pid))
            chunk.append(line if first else b",\n  " + line)
            first = False
            if len(chunk) >= 4096:
                yield b"".join(chunk)
                chunk = []
                done += 1
                if done % 16 == 0 and isinstance(log, mmap.mmap):
                    # The log's pages read so far count in this process's memory until unmapped: at
                    # 1,000,000 partitions, 370 MB. Drop them every 65,536 lines; a line still to come
                    # on one of them is read again from the page cache (a minor fault, no disk read).
                    log.madvise(mmap.MADV_DONTNEED)
        yield b"".join(chunk) + b"\n ]\n}\n"
