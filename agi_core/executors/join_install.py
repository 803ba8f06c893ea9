"""The installs a run makes for workers that join with other code: one per install target, however many wait.

With ``[cluster] install = "auto"`` (`join_check`), a worker that joins with other agi_core code
than the manager's has the install it runs brought up to date first. Where that install lives is
the backend's answer (`ClusterBackend.install_host_for`): over SSH each worker's own host; on
Slurm the login node, which builds the one venv on the shared filesystem that every job runs. So
the workers of several jobs that join with the old venv (at the start together, or one by one
later) share one rebuild: the first starts it, the others wait for the same one, and each then
restarts on it. Two workers of one SSH host likewise share their host's install. A failed install
fails every worker waiting for it, with its cause; none is tried twice in a run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..base.errors import AgiError

__all__ = ["Installs", "install_target"]


def install_target(backend: Any, host: str) -> str:
    """The host whose install the worker on ``host`` (a worker-map key) runs: itself over SSH,
    the login node of a shared venv; ``host`` itself when the backend installs nothing."""
    return backend.install_host_for(host) or host


class Installs:
    """The installs of one run, keyed by install target (`install_target`)."""

    def __init__(self, backend: Any, install: Callable[[str], Awaitable[None]]) -> None:
        self._backend, self._install = backend, install
        self._tasks: dict[str, asyncio.Task[bool]] = {}  # target -> its one install in this run
        self._workers: dict[str, list[str]] = {}  # target -> the workers that waited for it
        self._why: dict[str, str] = {}  # target -> what the first of them ran

    def target(self, host: str) -> str:
        return install_target(self._backend, host)

    def where(self, host: str) -> str:
        """How messages name the install of ``host``'s workers."""
        target = self.target(host)
        return f"the shared venv from {target}" if getattr(self._backend, "install_kind", "") == "shared" else target

    def doing(self, host: str) -> str:
        """What a worker on ``host`` that joins with other code now waits for, in words."""
        task = self._tasks.get(self.target(host))
        if task is None:
            return f"installing {self.where(host)}"
        return f"{'waiting for the install' if not task.done() else 'restarting it on the new install'} of {self.where(host)}"

    def start(self, host: str, worker: str, what: str) -> asyncio.Task[bool]:
        """The install that brings the worker ``worker`` on ``host`` up to date: started now, or
        the one of the same target under way (or done) in this run. Its result is False when the
        backend installs nothing for it; it raises what the install raised (`AgiError` naming
        the host and the cause)."""
        target = self.target(host)
        waiting = self._workers.setdefault(target, [])
        if worker not in waiting:
            waiting.append(worker)
        task = self._tasks.get(target)
        if task is None:
            self._why[target] = what
            task = self._tasks[target] = asyncio.ensure_future(self._backend.reinstall(host, self._install))
        return task

    async def install(self, host: str, worker: str, what: str) -> bool:
        """`start`, then wait for it (a waiter cancelled does not cancel the others' install)."""
        return bool(await asyncio.shield(self.start(host, worker, what)))

    def report(self) -> list[str]:
        """For the run record: each install made during the run, how it went, for whom and why."""
        return [f"{target}: {_outcome(task)} for worker(s) {', '.join(self._workers[target])}, which ran {self._why[target]}"
                for target, task in self._tasks.items()]

    async def close(self) -> None:
        """Stop installs still running (the run is over)."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(BaseException):
                await task


def _outcome(task: asyncio.Task[bool]) -> str:
    if not task.done():
        return "still installing when the run ended,"
    if task.cancelled():
        return "cancelled,"
    error = task.exception()
    if error is not None:
        return f"failed ({error.message if isinstance(error, AgiError) else f'{type(error).__name__}: {error}'}),"
    return "installed," if task.result() else "nothing to install,"
