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
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AgiError
from ..hosts import HostAddress

if TYPE_CHECKING:
    from ..settings import SshSettings

__all__ = ["CommandResult", "HostSession", "LocalSession", "SshError", "SshSession", "SshTarget", "open_session", "shell_path"]


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
            connect_timeout=ssh.connect_timeout, command_timeout=ssh.command_timeout,
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

    async def run(self, command: str, *, check: bool = True, timeout: float | None = None, input: str | None = None,
                  what: str | None = None) -> CommandResult:
        """Run ``command`` with bash; with ``check``, a non-zero exit is an `SshError` naming ``what``."""
        limit = timeout or self.timeout
        try:
            result = await asyncio.wait_for(self._run(command, input), limit)
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

    async def put(self, local: Path, remote: str) -> None:
        target = Path(os.path.expanduser(remote))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        await asyncio.to_thread(shutil.copy2, local, tmp)
        os.replace(tmp, target)

    async def close(self) -> None:
        pass


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

    async def close(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
        self._connection.close()
        try:
            await asyncio.wait_for(self._connection.wait_closed(), 5)
        except (asyncio.TimeoutError, OSError):
            pass  # a host that vanished cannot say goodbye


async def open_session(host: str, ssh: SshSettings) -> HostSession:
    """A session on ``host``: local for this machine's names and addresses, SSH otherwise."""
    address = HostAddress.parse(host)
    if address.is_local:
        return LocalSession(host, timeout=ssh.command_timeout)
    target = SshTarget.from_settings(address, ssh)
    return SshSession(target, await connect(target))


async def connect(target: SshTarget) -> Any:
    """Open an asyncssh connection with strict host-key checking, mapping failures to `SshError`."""
    import asyncssh

    from .known_hosts import describe_rejected_key

    host = target.host
    if target.key is not None and not target.key.is_file():
        raise SshError(host, "client key not found", str(target.key), fix="set [cluster.ssh] key to an existing private key")
    known_hosts: Any = str(target.known_hosts) if target.known_hosts.is_file() else asyncssh.import_known_hosts("")
    options: dict[str, Any] = {
        "port": target.port, "known_hosts": known_hosts, "connect_timeout": target.connect_timeout,
        "config": None,  # settings, not ~/.ssh/config, decide how hosts are reached
    }
    if target.user:
        options["username"] = target.user
    if target.key is not None:
        options["client_keys"] = [str(target.key)]
        options["agent_path"] = None
    try:
        return await asyncssh.connect(host, **options)
    except asyncssh.HostKeyNotVerifiable:
        raise await describe_rejected_key(target) from None
    except asyncssh.PermissionDenied:
        who = target.user or os.environ.get("USER", "the current user")
        raise SshError(host, "authentication refused", f"user {who}, key {target.key or 'default keys'}",
                       fix=f"add the client's public key to ~{who}/.ssh/authorized_keys on {host}, or set [cluster.ssh] user/key") from None
    except ConnectionRefusedError:
        raise SshError(host, "connection refused", f"nothing listens on port {target.port}",
                       fix=f"start sshd on {host}, or set [cluster.ssh] port") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise SshError(host, f"timeout after {target.connect_timeout:g} s", f"no answer on port {target.port}",
                       fix=f"check that {host} is up and reachable (network, firewall), or raise [cluster.ssh] connect_timeout") from None
    except socket.gaierror as exc:
        raise SshError(host, "name not resolved", str(exc.strerror or exc), fix=f"check the spelling of '{host}', or use its IP address") from None
    except OSError as exc:
        raise SshError(host, "unreachable", exc.strerror or str(exc), fix=f"check the network route to {host}") from None
    except asyncssh.Error as exc:
        raise SshError(host, "SSH error", str(exc.reason), fix="see `agi doctor APP` and the host's sshd log") from None
