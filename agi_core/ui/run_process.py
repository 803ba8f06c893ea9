"""The process a UI-started run runs in: ``python -m agi_core.ui.run_process FOLDER``.

A run started from the web UI must outlive `agi ui` (a restarted server finds it again from its
record), so it is not run in the server: `ui.detached` starts this module in its own session with
the folder holding the run's request. It runs the request as `AGI.run_request` does for the CLI,
writes each event as a JSON line (``events.jsonl``, with the time it happened) for the server that
follows it, and its outcome (``outcome.json``) when it ends. SIGINT stops it as Ctrl-C stops
``agi run``: the run is cancelled, the executor stops what it started, the record says
``interrupted``. SIGTERM does the same (`run.termination`). Nothing here imports the web stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["EVENTS_FILE", "LOG_FILE", "OUTCOME_FILE", "PROCESS_FILE", "REQUEST_FILE", "main", "run_images"]

REQUEST_FILE = "request.json"
EVENTS_FILE = "events.jsonl"
OUTCOME_FILE = "outcome.json"
PROCESS_FILE = "process.json"  # written by the server that started it: pid, start time
LOG_FILE = "output.log"  # what the run printed (stdout and stderr)
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp")


def run_images(run_dir: Path) -> list[str]:
    """The run's output images, relative to its folder (shown under the finished run)."""
    out = Path(run_dir) / "out"
    return sorted(str(p.relative_to(run_dir)) for p in out.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if out.is_dir() else []


class _StopOnSigint:
    """SIGINT cancels the run's task once (a second one is ignored: the run is stopping already).
    Installed before anything else, so a SIGINT that comes while the process starts stops it
    before the run exists, never half-way through a cluster start."""

    def __init__(self) -> None:
        self.asked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None

    def handler(self, signum: int, frame: object) -> None:
        if self.asked:
            return
        self.asked = True
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)

    def attach(self) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        if self.asked:
            raise asyncio.CancelledError


def _summary(result: Any, request: Any) -> dict[str, Any]:
    return {"run_id": result.run_id, "app": request.app, "status": result.status, "images": run_images(result.run_dir),
            "plan_file": request.plan_file}


async def _run(request: Any, emit: Any, stop: _StopOnSigint) -> dict[str, Any]:
    from ..agi import AGI
    from ..base.errors import AgiError, RunError

    try:
        stop.attach()
        result = await AGI.run_request(request, on_event=emit)
    except asyncio.CancelledError:
        return {"status": "cancelled"}
    except RunError as exc:
        return {"status": "failed", "error": exc.message, "fix": exc.fix,
                "result": _summary(exc.result, request) if exc.result is not None else {"app": request.app}}
    except AgiError as exc:  # refused before it ran (a stale edited plan, ...): the page may offer the fix
        return {"status": "failed", "error": exc.message, "fix": exc.fix, "result": {"app": request.app, "plan_file": request.plan_file}}
    return {"status": "ok", "result": _summary(result, request)}


def _write_outcome(folder: Path, outcome: dict[str, Any]) -> None:
    tmp = folder / f".{OUTCOME_FILE}.tmp"
    tmp.write_text(json.dumps(outcome))
    os.replace(tmp, folder / OUTCOME_FILE)


def main(folder: Path) -> int:
    stop = _StopOnSigint()
    signal.signal(signal.SIGINT, stop.handler)
    from ..base.errors import Terminated
    from ..run import RunRequest

    request = RunRequest.from_json((folder / REQUEST_FILE).read_text())
    with (folder / EVENTS_FILE).open("a", buffering=1) as out:  # a line each: the server reads whole lines

        def emit(event: Any) -> None:
            out.write(json.dumps({**event.as_dict(), "at": round(time.time(), 4)}) + "\n")

        try:
            outcome = asyncio.run(_run(request, emit, stop))
        except Terminated as exc:
            outcome = {"status": "cancelled", "error": exc.message}
        except Exception as exc:  # noqa: BLE001 - shown in the page, with the traceback
            outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", "result": {"app": request.app}}
    _write_outcome(folder, outcome)
    return {"ok": 0, "cancelled": 130}.get(outcome["status"], 1)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
