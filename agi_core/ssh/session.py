"""A session on one host: run commands and move files, over SSH or, for this machine, locally.

One SSH connection per host serves a whole operation (probe, upload, install, checks). Host keys
are checked strictly against the ``[cluster.ssh] known_hosts`` file; every failure becomes an
`SshError` that names the host, the cause and the fix.
"""

from __future__ import annotations

import abc
import asyncio
import os
import shlex
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import replacing
from ..errors import AgiError
from ..hosts import HostAddress
from ..secret_refs import Secret

if TYPE_CHECKING:
    from ..settings import SshSettings

__all__ = ["CommandResult", "HostSession", "LocalSession", "SshError", "SshSession", "SshTarget", "Tether", "shell_path"]


class SshError(AgiError):
    """A host could not be reached or a command on it failed; ``cause`` is a short label."""

    def __init__(self, host: str, cause: str, detail: str = "", *, fix: str | None = None) -> None:
        super().__init__(f"{host}: {cause}" + (f": {detail}" if detail else ""), fix=fix)
        self.host = host
        self.cause = cause


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
            out, err = await asyncio.gather(_lines(process.stdout, on_line), _lines(process.stderr, on_line))
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


async def _lines(stream: Any, on_line: Callable[[str], None]) -> str:
    """Read ``stream`` (asyncio's or asyncssh's) to its end, giving each line to ``on_line``; all of it."""
    seen = []
    while True:
        line = await stream.readline()
        if not line:
            return "".join(seen)
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        seen.append(text)
        on_line(text.rstrip("\r\n"))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


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
                out, err = await asyncio.gather(_lines(process.stdout, on_line), _lines(process.stderr, on_line))
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
