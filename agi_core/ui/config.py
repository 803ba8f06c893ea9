"""`UiConfig`: what one `agi ui` server serves (apps, share, pipeline file) and how it is reached."""

from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..base.errors import AgiError

__all__ = ["UiConfig", "check_bind", "is_loopback"]


def _token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class UiConfig:
    """One UI server: where apps, runs and steps are, and its address and secrets."""

    apps_path: tuple[Path, ...] | None = None  # None: the default apps search path
    app: str | None = None  # the app the ORCHESTRATE page opens with
    share: Path | None = None  # None: each app's `workers_data_path` (else the default share)
    steps_file: Path = Path("lab_steps.toml")  # the PIPELINE page's file
    state: Path | None = None  # where UI-started runs keep their request, events and log (None: $XDG_STATE_HOME/agi_core/ui)
    host: str = "127.0.0.1"
    port: int = 8765
    allow_remote: bool = False  # a non-loopback bind must be asked for
    token: str = field(default_factory=_token, repr=False)  # required on every request
    csrf: str = field(default_factory=_token, repr=False)  # required on every cookie-authenticated POST

    def url(self, port: int | None = None) -> str:
        """The URL to open (with the token, as Jupyter prints it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port or self.port}/?token={self.token}"

    def state_dir(self) -> Path:
        """The UI's own files (one folder per run it started): kept across `agi ui` restarts."""
        from ..base.paths import state_dir

        return self.state if self.state is not None else state_dir("ui")

    def share_override(self) -> dict[str, str]:
        """The ``cluster=`` override every call from the UI carries (the share it was given)."""
        return {"workers_data_path": str(self.share)} if self.share else {}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to them (``localhost``)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(config: UiConfig) -> None:
    """Refuse a bind beyond this machine unless ``allow_remote``: the UI runs code on the cluster."""
    if not config.allow_remote and not is_loopback(config.host):
        raise AgiError(f"refusing to serve the UI on {config.host}: anyone who can reach it could run code on your cluster",
                       fix="serve it on 127.0.0.1 (the default) and use an SSH tunnel, or pass --allow-remote")
