"""`run_snippet`: run a generated snippet's ``main()`` as a script or inside a notebook cell.

A snippet is one file that must run unchanged as ``python run.py`` and pasted into a Jupyter cell
(or ``%run run.py``). In a script no event loop runs: ``asyncio.run(main())``, and the process
exits with main's status. In a notebook the kernel's loop already runs in this thread, so
``asyncio.run`` would refuse ("cannot be called from a running event loop") and a plain cell cannot
``await``: main() runs on a loop of its own in a helper thread while the cell waits, its output
appears in the cell, and the status is printed rather than exiting the kernel. The kernel's
interrupt (Ctrl-C, the ■ button) cancels the run there as Ctrl-C does in a terminal: the workers
stop and the record says ``interrupted``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..base.errors import AgiError

__all__ = ["loop_running", "run_snippet"]


def loop_running() -> bool:
    """True when this thread runs an event loop already (a Jupyter kernel, an async app)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_beside(main: Callable[[], Awaitable[int]]) -> int:
    """``main()`` on a fresh event loop in a helper thread, waited for; a KeyboardInterrupt in
    this thread (the kernel's interrupt) cancels it, waits for it to stop, and is raised again."""
    loop = asyncio.new_event_loop()
    task: asyncio.Task[int] | None = None
    outcome: dict[str, Any] = {}
    ready = threading.Event()

    async def wrapped() -> int:
        nonlocal task
        task = asyncio.current_task()  # type: ignore[assignment]
        ready.set()
        return await main()

    def target() -> None:
        try:
            outcome["status"] = loop.run_until_complete(wrapped())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=target, name="agi-snippet", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)  # short waits: the interrupt is seen at once
    except KeyboardInterrupt:
        ready.wait()
        if task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        thread.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return int(outcome["status"])


def run_snippet(main: Callable[[], Awaitable[int]]) -> int:
    """Run a snippet's ``main()`` and return its status. In a script (no running loop) the
    process exits with it; in a notebook (a running loop) it is returned as the cell's value.
    An `AgiError` prints ``error:`` / ``fix:`` (status 1); Ctrl-C prints ``interrupted`` (130)."""
    notebook = loop_running()
    try:
        status = _run_beside(main) if notebook else asyncio.run(main())  # type: ignore[arg-type]
    except AgiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted (the run's record says what finished; resume it with AGI.run(env, resume=RUN_ID))",
              file=sys.stderr)
        if notebook:
            raise
        status = 130
    if not notebook:
        sys.exit(status)
    return status
