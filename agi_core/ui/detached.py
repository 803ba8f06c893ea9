"""UI-started runs in their own process (`ui.run_process`), so they outlive `agi ui`.

The server writes the run's request in a folder of its state (``runs/JOB_ID/``), starts the run
detached (its own session, output to ``output.log`` there) and follows its ``events.jsonl`` into the
job: the page draws it as before. When `agi ui` stops, the run goes on; a restarted server follows
it from its record (`ui.live`), and finds its process again here (`process_of_run`) to cancel it.
Cancel sends SIGINT (the run stops as after Ctrl-C, and stops what it started); a run that has not
ended ``STOP_S`` later is killed with its whole process group.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import AgiError
from .jobs import Job
from .run_process import EVENTS_FILE, LOG_FILE, OUTCOME_FILE, PROCESS_FILE, REQUEST_FILE

__all__ = ["RunProcess", "process_of_run", "run_detached"]

STOP_S = 60.0  # how long a cancelled run may take to stop its executor and write its record
KEEP_S = 7 * 86400  # the folders of runs that ended are removed this long after (their records stay on the share)
TICK_S = 0.1  # how often the events file is read


def _package_root() -> str:
    """The folder holding this `agi_core`: the run process imports the same code as the server."""
    return str(Path(__file__).resolve().parents[2])


@dataclass
class RunProcess:
    """One detached run process, started by this server or found again in the state folder."""

    folder: Path
    pid: int
    started: float  # the process's start time (psutil's create_time): a reused pid is not ours
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)  # when this server started it

    @classmethod
    def start(cls, folder: Path, request_json: str) -> RunProcess:
        _prune(folder.parent)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REQUEST_FILE).write_text(request_json)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p)}
        with (folder / LOG_FILE).open("ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "agi_core.ui.run_process", str(folder)], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, close_fds=True)
        found = cls(folder, process.pid, _create_time(process.pid), process)
        (folder / PROCESS_FILE).write_text(json.dumps({"pid": found.pid, "started": found.started}))
        return found

    @classmethod
    def read(cls, folder: Path) -> RunProcess | None:
        try:
            data = json.loads((folder / PROCESS_FILE).read_text())
            return cls(folder, int(data["pid"]), float(data["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None  # (and reaps it)
        return not (self.folder / OUTCOME_FILE).exists() and _create_time(self.pid) == self.started

    def interrupt(self) -> None:
        """Stop the run as Ctrl-C does (its record says ``interrupted``)."""
        if self.alive:
            _signal(self.pid, signal.SIGINT, group=False)

    def kill(self) -> None:
        """The last resort: the run and every process of its session's group."""
        _signal(self.pid, signal.SIGKILL, group=True)

    async def stop(self, follow: Any = None) -> None:
        """Interrupt it and wait until it ended (``follow()`` runs meanwhile), else kill it."""
        self.interrupt()
        deadline = time.monotonic() + STOP_S
        while self.alive and time.monotonic() < deadline:
            if follow is not None:
                follow()
            await asyncio.sleep(TICK_S)
        if self.alive:
            self.kill()


def _prune(runs: Path) -> None:
    """Remove the folders of UI runs that ended more than `KEEP_S` ago."""
    import shutil

    if not runs.is_dir():
        return
    for outcome in runs.glob(f"*/{OUTCOME_FILE}"):
        try:
            if time.time() - outcome.stat().st_mtime > KEEP_S:
                shutil.rmtree(outcome.parent, ignore_errors=True)
        except OSError:
            continue


def _create_time(pid: int) -> float:
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 3)
    except psutil.Error:
        return 0.0


def _signal(pid: int, sig: int, *, group: bool) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _EventsReader:
    """The whole lines added to ``events.jsonl`` since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.rest = path, 0, b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def _outcome(folder: Path, returncode: int | None) -> dict[str, Any]:
    try:
        return json.loads((folder / OUTCOME_FILE).read_text())
    except (OSError, ValueError):
        return {"status": "failed", "error": f"the run's process ended (exit status {returncode}) without saying how the run went"}


async def run_detached(job: Job, folder: Path, request_json: str) -> dict[str, Any]:
    """The job's work: start the run process, pass its events on to ``job``, return its summary
    (or raise as the run did, so the job ends ok, failed or cancelled like an in-server run)."""
    process = RunProcess.start(folder, request_json)
    events = _EventsReader(folder / EVENTS_FILE)

    def follow() -> None:
        for data in events.read():
            job.add(data)

    try:
        while process.alive:
            follow()
            await asyncio.sleep(TICK_S)
    except asyncio.CancelledError:
        await process.stop(follow)
        follow()
        raise
    follow()
    outcome = _outcome(folder, process.popen.returncode if process.popen else None)
    result = outcome.get("result") or {}
    if outcome["status"] == "ok":
        return result
    if outcome["status"] == "cancelled":  # stopped from outside the UI (SIGTERM, or a restarted server's cancel)
        raise asyncio.CancelledError
    error = AgiError(outcome.get("error") or "the run failed", fix=outcome.get("fix") or f"its output is in {folder / LOG_FILE}")
    error.ui_result = result  # type: ignore[attr-defined]
    raise error


def process_of_run(state: Path, run_id: str) -> RunProcess | None:
    """The live process of UI-started run ``run_id`` (found by its ``run_started`` event), if any:
    after `agi ui` restarts, its page can still cancel it."""
    runs = state / "runs"
    if not runs.is_dir():
        return None
    for folder in runs.iterdir():
        if (folder / OUTCOME_FILE).exists():
            continue
        process = RunProcess.read(folder)
        if process is None or not process.alive:
            continue
        try:
            with (folder / EVENTS_FILE).open("rb") as f:
                head = f.read(1 << 16)
        except OSError:
            continue
        if f'"run_id": "{run_id}"'.encode() in head:
            return process
    return None
