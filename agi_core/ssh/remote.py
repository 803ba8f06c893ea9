"""`SshSession`: a host reached over SSH, and how to reach it (`SshTarget`).

Apart from `session` (the interface) and `local` (this machine) because its transport is
asyncssh: one connection per host serves a whole operation (probe, upload, install, checks),
with one SFTP channel for files; a lost connection becomes an `SshError` naming the host.
Connecting, with host keys checked strictly against ``[cluster.ssh] known_hosts``, is `connect`.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.hosts import HostAddress
from ..settings.secret_refs import Secret
from .session import CommandResult, HostSession, SshError, Tether, stream_lines

if TYPE_CHECKING:
    from ..settings import SshSettings

__all__ = ["SshSession", "SshTarget"]


@dataclass(frozen=True)
class SshTarget:
    """How to reach one host over SSH."""

    host: str
    port: int = 22
    user: str | None = None
    key: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    #: decrypts an encrypted ``key``; read (`Secret.reveal`) only when connecting
    passphrase: Secret | None = None

    @classmethod
    def from_settings(cls, host: str | HostAddress, ssh: SshSettings) -> SshTarget:
        """The target for a worker-map key: its ``user@`` and ``:port`` win over ``[cluster.ssh]``.

        >>> from agi_core.settings import SshSettings
        >>> target = SshTarget.from_settings("[fe80::1]:2222", SshSettings(user="agi"))
        >>> target.host, target.port, target.user
        ('fe80::1', 2222, 'agi')
        """
        address = host if isinstance(host, HostAddress) else HostAddress.parse(host)
        return cls(
            host=address.host, port=address.port or ssh.port, user=address.user or ssh.user,
            key=Path(ssh.key).expanduser() if ssh.key else None,
            known_hosts=Path(ssh.known_hosts).expanduser(),
            connect_timeout=ssh.connect_timeout, command_timeout=ssh.command_timeout, passphrase=ssh.key_passphrase,
        )


class SshSession(HostSession):
    """A host reached over one asyncssh connection (and one SFTP channel, opened on first use)."""

    def __init__(self, target: SshTarget, connection: Any) -> None:
        self.target = target
        self.host = target.host
        self.timeout = target.command_timeout
        self._connection = connection
        self._sftp: Any = None

    async def _run(self, command: str, input: str | None) -> CommandResult:
        import asyncssh

        try:
            result = await self._connection.run(f"bash -c {shlex.quote(command)}", input=input, check=False)
        except (asyncssh.Error, OSError) as exc:
            raise SshError(self.host, "connection lost", str(getattr(exc, "reason", "") or exc),
                           fix=f"check that {self.host} is up and reachable") from None
        status = result.exit_status if result.exit_status is not None else 255
        return CommandResult(command, status, str(result.stdout or ""), str(result.stderr or ""))

    async def _run_lines(self, command: str, input: str | None, on_line: Callable[[str], None]) -> CommandResult:
        import asyncssh

        try:
            process = await self._connection.create_process(f"bash -c {shlex.quote(command)}", input=input)
            try:
                out, err = await asyncio.gather(stream_lines(process.stdout, on_line), stream_lines(process.stderr, on_line))
                result = await process.wait(check=False)
            finally:
                process.close()
        except (asyncssh.Error, OSError) as exc:
            raise SshError(self.host, "connection lost", str(getattr(exc, "reason", "") or exc),
                           fix=f"check that {self.host} is up and reachable") from None
        status = result.exit_status if result.exit_status is not None else 255
        return CommandResult(command, status, out, err)

    async def put(self, local: Path, remote: str) -> None:
        import asyncssh

        try:
            await self._put(local, remote)
        except (asyncssh.Error, OSError) as exc:
            raise SshError(self.host, f"upload of {local.name} failed", str(getattr(exc, "reason", "") or exc),
                           fix=f"check the free space and permissions of {remote} on {self.host}") from None

    async def _put(self, local: Path, remote: str) -> None:
        if self._sftp is None:
            self._sftp = await self._connection.start_sftp_client()
        relative = remote[2:] if remote.startswith("~/") else remote  # SFTP paths are relative to the home
        parent = os.path.dirname(relative)
        if parent:
            await self._sftp.makedirs(parent, exist_ok=True)
        tmp = f"{relative}.tmp{os.getpid()}"
        await self._sftp.put(str(local), tmp, preserve=True)
        await self._sftp.posix_rename(tmp, relative)

    async def tether(self, command: str) -> Tether:
        process = await self._connection.create_process(f"bash -c {shlex.quote(command)}", stderr=None)

        async def release() -> None:
            process.stdin.write_eof()
            await process.wait_closed()

        return Tether(release)

    async def close(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
        self._connection.close()
        try:
            await asyncio.wait_for(self._connection.wait_closed(), 5)
        except (asyncio.TimeoutError, OSError):
            pass  # a host that vanished cannot say goodbye
