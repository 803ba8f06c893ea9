"""Writing a run's record while it runs, cheaply enough for 100,000 partitions.

The manifest (``manifest.json``) is written whole only at the start and at the end. In between,
partition outcomes are appended to ``partitions.jsonl`` beside it, about once a second, and a
``heartbeat`` file says the manager is alive. A manager killed by SIGKILL thus leaves a record
that holds every partition that finished before the kill, and that readers can tell is
abandoned (see `agi_core.provenance.store`). At the end the log is folded into the manifest and
removed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ..atomic import write_bytes_atomic, write_text_atomic
from .lines import not_run_line
from .model import RunRecord

__all__ = ["HEARTBEAT_FILE", "HEARTBEAT_S", "LOG_FILE", "MANIFEST_FILE", "RecordWriter"]

MANIFEST_FILE = "manifest.json"
LOG_FILE = "partitions.jsonl"
HEARTBEAT_FILE = "heartbeat"
HEARTBEAT_S = 2.0  # how often the heartbeat is refreshed and the log flushed


class RecordWriter:
    """Keeps a run's record on the share up to date. Use as a context manager around the run."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._lines: list[bytes] = []  # logged since the last flush
        self._line_of: dict[str, bytes] = {}  # every partition's latest line, for the final record
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def manifest(self) -> Path:
        return self.run_dir / MANIFEST_FILE

    def write(self, record: RunRecord) -> None:
        """Write the whole manifest atomically (at the start, on phase changes, at the end)."""
        write_text_atomic(self.manifest, record.dump_json())

    def add(self, pid: str, line: bytes) -> None:
        """Queue one partition's record line (`lines.partition_line`) for the log; the heartbeat
        thread flushes it. The latest line of a partition is the one the final record keeps."""
        self._line_of[pid] = line
        self._lines.append(line)  # atomic; `flush` swaps the list before writing it, so none is lost

    def flush(self) -> None:
        """Append the queued outcomes to the log and refresh the heartbeat."""
        with self._lock:
            lines, self._lines = self._lines, []
            if lines:
                with (self.run_dir / LOG_FILE).open("ab") as log:
                    log.write(b"\n".join(lines) + b"\n")
            (self.run_dir / HEARTBEAT_FILE).write_text(f"{time.time():.3f}\n")

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

    def finish(self, record: RunRecord, partitions: Iterable[tuple[str, str | None]]) -> None:
        """Stop the heartbeat, write the complete record, and remove the log and heartbeat.

        ``partitions``: the plan's (partition id, slot) pairs, in order; those without a line
        are recorded as not run. The partition list is spliced in as the JSON already made for
        the log: no model per partition, so 100,000 partitions cost a fraction of a second.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._lines = []
        lines = [self._line_of.get(pid) or not_run_line(pid, slot) for pid, slot in partitions]
        head = record.model_dump_json(by_alias=True, indent=1, exclude={"partitions"}).encode()
        body = head[: head.rindex(b"}")].rstrip() + b',\n "partitions": [\n  ' + b",\n  ".join(lines) + b"\n ]\n}\n"
        write_bytes_atomic(self.manifest, body)
        for name in (LOG_FILE, HEARTBEAT_FILE):
            try:
                os.unlink(self.run_dir / name)
            except FileNotFoundError:
                pass
