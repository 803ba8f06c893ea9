"""Host keys: tell an unknown key from a changed one, and record a key the user trusts."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .remote import SshTarget
    from .session import SshError

__all__ = ["HostKeyInfo", "describe_rejected_key", "fetch_host_key", "trust_host"]


@dataclass(frozen=True)
class HostKeyInfo:
    host: str
    port: int
    algorithm: str
    fingerprint: str  # SHA256:...
    openssh: str  # "ssh-ed25519 AAAA..."
    known: bool  # this exact key is in known_hosts
    other_known: bool  # known_hosts holds a different key for this host: it changed


def _pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _trust_command(target: SshTarget) -> str:
    """The `agi hosts trust` line that records this target's key (its port too, when not 22)."""
    port = f" --port {target.port}" if target.port != 22 else ""
    return f"agi hosts trust {target.host}{port} --known-hosts {shlex.quote(str(target.known_hosts))}"


def _known_keys(known_hosts: Path, host: str, port: int) -> list[str]:
    import asyncssh

    if not known_hosts.is_file():
        return []
    trusted = asyncssh.read_known_hosts(str(known_hosts)).match(host, "", port)[0]
    return [key.export_public_key("openssh").decode().split()[1] for key in trusted]


async def fetch_host_key(host: str, port: int, known_hosts: Path, *, timeout: float = 10.0) -> HostKeyInfo:
    """The key the server at ``host:port`` presents, and whether known_hosts trusts it."""
    import asyncio

    import asyncssh

    from .session import SshError

    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port), timeout)
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        raise SshError(host, "cannot read the host key", str(exc), fix=f"check that sshd runs on {host}:{port}") from None
    if key is None:
        raise SshError(host, "the server presented no host key", fix="check the server's sshd configuration")
    openssh = key.export_public_key("openssh").decode().strip()
    known = _known_keys(known_hosts, host, port)
    return HostKeyInfo(host, port, key.get_algorithm(), key.get_fingerprint("sha256"), openssh,
                       known=openssh.split()[1] in known, other_known=bool(known) and openssh.split()[1] not in known)


def trust_host(info: HostKeyInfo, known_hosts: Path) -> None:
    """Append the host's key to known_hosts (creating the file with safe permissions)."""
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = f"{_pattern(info.host, info.port)} {' '.join(info.openssh.split()[:2])}\n"
    fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(line)


async def describe_rejected_key(target: SshTarget) -> SshError:
    """Why the host key was refused: unknown (with its fingerprint) or changed (a warning)."""
    from .session import SshError

    try:
        info = await fetch_host_key(target.host, target.port, target.known_hosts, timeout=target.connect_timeout)
    except SshError:
        return SshError(target.host, "host key not trusted", f"not in {target.known_hosts}",
                        fix=f"check the host's key, then: {_trust_command(target)}")
    if info.other_known:
        return SshError(
            target.host, "host key CHANGED",
            f"{target.known_hosts} holds another key for it; the server now presents {info.algorithm} {info.fingerprint}",
            fix=f"if the host was reinstalled on purpose: ssh-keygen -R {_pattern(target.host, target.port)} -f {target.known_hosts}, "
            f"then {_trust_command(target)}; otherwise someone may be intercepting the connection",
        )
    return SshError(target.host, "unknown host key", f"{info.algorithm} {info.fingerprint} is not in {target.known_hosts}",
                    fix=f"check the fingerprint, then: {_trust_command(target)}")
