"""SIGTERM stops a run as Ctrl-C does: the run's task is cancelled, the executor stopped, the
record says ``interrupted`` ("terminated by SIGTERM"), and `errors.Terminated` (exit status 143) ends it.

SIGTERM is what ``timeout``, batch systems (Slurm's ``scancel``, a job's time limit) and service
managers send; left to its default it kills the manager at once, and the record reads
``abandoned``. The handler is installed only in the main thread, only while a run runs, and only
where SIGTERM still has its default disposition: an application (a web server) that handles
SIGTERM itself keeps its handler.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import TracebackType

__all__ = ["TERMINATED_MESSAGE", "SigtermCancels"]

TERMINATED_MESSAGE = "terminated by SIGTERM"


class SigtermCancels:
    """Within ``with``, in a coroutine: a SIGTERM cancels the task that entered (once; the run
    then stops its executor and writes its record). ``received`` says whether one came."""

    def __init__(self) -> None:
        self.received = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> SigtermCancels:
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return self
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        if task is None:
            return self
        try:
            loop.add_signal_handler(signal.SIGTERM, self._on_sigterm, task)
        except (NotImplementedError, RuntimeError, ValueError):  # no signals on this loop or platform
            return self
        self._loop = loop
        return self

    def _on_sigterm(self, task: asyncio.Task[object]) -> None:
        if not self.received:
            self.received = True
            task.cancel(TERMINATED_MESSAGE)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_signal_handler(signal.SIGTERM)  # back to the default
