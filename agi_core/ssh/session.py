"""A session on one host, whatever reaches it: run commands and move files (`HostSession`).

The interface and what every session shares: the command's result, the error that names the
host (`SshError`), the tether, the quoting of remote paths. Its two kinds are apart, each with
its own transport: `remote` (`SshSession`: one asyncssh connection per host serves a whole
operation, host keys checked strictly) and `local` (`LocalSession`: this machine, a local shell).
"""

from __future__ import annotations

import abc
import asyncio
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import AgiError

__all__ = ["CommandResult", "HostSession", "SshError", "Tether", "shell_path", "stream_lines"]


class SshError(AgiError):
    """A host could not be reached or a command on it failed; ``cause`` is a short label."""

    def __init__(self, host: str, cause: str, detail: str = "", *, fix: str | None = None) -> None:
        super().__init__(f"{host}: {cause}" + (f": {detail}" if detail else ""), fix=fix)
        self.host = host
        self.cause = cause


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class HostSession(abc.ABC):
    """Commands and files on one host. Remote paths may start with ``~/`` (the user's home)."""

    host: str
    timeout: float

    @abc.abstractmethod
    async def _run(self, command: str, input: str | None) -> CommandResult: ...

    @abc.abstractmethod
    async def put(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` (a file path), keeping its mode."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def tether(self, command: str) -> Tether:
        """Start ``command`` with its standard input held by this process: it reads end of file
        (``cat > /dev/null`` returns) when the tether is released *or this process dies*, however
        it dies, because the kernel then closes the pipe or the SSH connection. A watch on the
        manager, for processes that must not outlive it."""

    async def _run_lines(self, command: str, input: str | None, on_line: Callable[[str], None]) -> CommandResult:
        """`_run`, giving each line of stdout and stderr to ``on_line`` as it is printed. This
        default gives them once the command ended; sessions that can stream override it."""
        result = await self._run(command, input)
        for line in (result.stdout + result.stderr).splitlines():
            on_line(line)
        return result

    async def run(self, command: str, *, check: bool = True, timeout: float | None = None, input: str | None = None,
                  what: str | None = None, on_line: Callable[[str], None] | None = None) -> CommandResult:
        """Run ``command`` with bash; with ``check``, a non-zero exit is an `SshError` naming ``what``;
        ``on_line`` gets each line it prints (stdout and stderr), as it prints it."""
        limit = timeout or self.timeout
        try:
            running = self._run(command, input) if on_line is None else self._run_lines(command, input, on_line)
            result = await asyncio.wait_for(running, limit)
        except (asyncio.TimeoutError, TimeoutError):
            raise SshError(self.host, f"{what or 'command'} timed out after {limit:g} s", shlex.quote(command)[:200],
                           fix="check the host's load, or raise [cluster.ssh] command_timeout") from None
        if check and not result.ok:
            tail = (result.stderr.strip() or result.stdout.strip())[-1500:]
            raise SshError(self.host, f"{what or 'command'} failed (exit {result.exit_status})", tail,
                           fix="see the output above; `agi doctor APP` checks the host")
        return result

    async def read_text(self, remote: str) -> str | None:
        """A remote file's text, or None when it does not exist."""
        result = await self.run(f"cat {shell_path(remote)} 2>/dev/null", check=False)
        return result.stdout if result.ok else None

    async def write_text(self, remote: str, text: str) -> None:
        """Write a remote file atomically (a temporary file, then a rename)."""
        target = shell_path(remote)
        await self.run(f'mkdir -p "$(dirname {target})" && cat > {target}.tmp$$ && mv -f {target}.tmp$$ {target}',
                       input=text, what=f"writing {remote}")

    async def __aenter__(self) -> HostSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Tether:
    """A running tethered command (see `HostSession.tether`); `release` ends it."""

    def __init__(self, release: Callable[[], Awaitable[None]]) -> None:
        self._release = release

    async def release(self) -> None:
        try:
            await asyncio.wait_for(self._release(), 10)
        except (asyncio.TimeoutError, OSError, Exception):  # noqa: BLE001 - a gone host has already let go
            pass


def shell_path(remote: str) -> str:
    """Quote a remote path for the shell, keeping a leading ``~/`` expandable.

    >>> print(shell_path("~/.agi/my venv"), shell_path("/srv/share"))
    "$HOME"/'.agi/my venv' /srv/share
    """
    if remote.startswith("~/"):
        return '"$HOME"/' + shlex.quote(remote[2:])
    return shlex.quote(remote)


async def stream_lines(stream: Any, on_line: Callable[[str], None]) -> str:
    """Read ``stream`` (asyncio's or asyncssh's) to its end, giving each line to ``on_line``; all of it."""
    seen = []
    while True:
        line = await stream.readline()
        if not line:
            return "".join(seen)
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        seen.append(text)
        on_line(text.rstrip("\r\n"))
