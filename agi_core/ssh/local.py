"""`LocalSession`: this machine, reached through a local shell instead of SSH.

The same interface as a remote host (`HostSession`), so this machine installs, starts processes
and is checked the way every host is. Apart from `session` (the interface) and `remote` (SSH)
because its transport is subprocesses: commands run in their own process group, killed with
it when cancelled; files are copied and renamed into place.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..base.atomic import replacing
from .session import CommandResult, HostSession, Tether, stream_lines

__all__ = ["LocalSession"]


class LocalSession(HostSession):
    """This machine, reached without SSH (same interface, so it installs the same way)."""

    def __init__(self, host: str, *, timeout: float = 600.0) -> None:
        self.host = host
        self.timeout = timeout

    async def _run(self, command: str, input: str | None) -> CommandResult:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", command, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
        try:
            out, err = await process.communicate(input.encode() if input is not None else None)
        except asyncio.CancelledError:
            _kill_group(process.pid)
            raise
        return CommandResult(command, process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))

    async def _run_lines(self, command: str, input: str | None, on_line: Callable[[str], None]) -> CommandResult:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", command, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
        try:
            if input is not None and process.stdin is not None:
                process.stdin.write(input.encode())
                process.stdin.close()
            out, err = await asyncio.gather(stream_lines(process.stdout, on_line), stream_lines(process.stderr, on_line))
            await process.wait()
        except asyncio.CancelledError:
            _kill_group(process.pid)
            raise
        return CommandResult(command, process.returncode or 0, out, err)

    async def put(self, local: Path, remote: str) -> None:
        target = Path(os.path.expanduser(remote))
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target) as tmp:
            await asyncio.to_thread(shutil.copy2, local, tmp)

    async def close(self) -> None:
        pass

    async def tether(self, command: str) -> Tether:
        process = await asyncio.create_subprocess_exec("bash", "-c", command, stdin=asyncio.subprocess.PIPE,
                                                       stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                                                       start_new_session=True)  # not killed with us: it acts when we die

        async def release() -> None:
            assert process.stdin is not None
            process.stdin.close()
            await process.wait()

        return Tether(release)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass
