"""Reaching hosts: one session per host (SSH, or a local shell for this machine), strict host keys."""

from .known_hosts import HostKeyInfo, fetch_host_key, trust_host
from .session import CommandResult, HostSession, LocalSession, SshError, SshSession, SshTarget, open_session, shell_path

__all__ = [
    "CommandResult",
    "HostKeyInfo",
    "HostSession",
    "LocalSession",
    "SshError",
    "SshSession",
    "SshTarget",
    "fetch_host_key",
    "open_session",
    "shell_path",
    "trust_host",
]
