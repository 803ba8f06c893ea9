"""Reaching hosts: one session per host (SSH, or a local shell for this machine), strict host keys."""

from .connect import connect, open_session
from .known_hosts import HostKeyInfo, fetch_host_key, trust_host
from .local import LocalSession
from .remote import SshSession, SshTarget
from .session import CommandResult, HostSession, SshError, Tether, shell_path

__all__ = [
    "CommandResult",
    "HostKeyInfo",
    "HostSession",
    "LocalSession",
    "SshError",
    "SshSession",
    "SshTarget",
    "Tether",
    "connect",
    "fetch_host_key",
    "open_session",
    "shell_path",
    "trust_host",
]
