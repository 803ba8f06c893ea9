"""Opening a session to a host: a local shell for this machine, else asyncssh with strict host keys."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING, Any

from ..base.hosts import HostAddress
from .local import LocalSession
from .remote import SshSession, SshTarget
from .session import HostSession, SshError

if TYPE_CHECKING:
    from ..settings import SshSettings

__all__ = ["connect", "open_session"]


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
        if target.passphrase is not None:
            options["passphrase"] = target.passphrase.reveal("cluster.ssh.key_passphrase")
    try:
        return await asyncssh.connect(host, **options)
    except asyncssh.HostKeyNotVerifiable:
        raise await describe_rejected_key(target) from None
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        raise _undecryptable_key(target, exc) from None
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


def _undecryptable_key(target: SshTarget, exc: Exception) -> SshError:
    """The client key could not be loaded: encrypted without a passphrase given, or a wrong one."""
    if "bcrypt" in str(exc):
        return SshError(target.host, "client key cannot be decrypted here", f"{target.key}: {exc}",
                        fix="install bcrypt in agi's environment: pip install 'agi-orchestrator[ssh-keys]'")
    if target.passphrase is None:
        return SshError(target.host, "client key is encrypted", f"{target.key}: {exc}",
                        fix='name its passphrase: [cluster.ssh] key_passphrase = {env = "NAME"} or {file = "PATH"} (chmod 600)')
    return SshError(target.host, "client key could not be decrypted", f"{target.key}: {exc}",
                    fix=f"check the passphrase that [cluster.ssh] key_passphrase names ({target.passphrase})")
