"""Install worker environments: the app, agi_core and pinned dependencies, on every host, with uv."""

from .installer import InstallError, InstallReport, hosts_of, install_app

__all__ = ["InstallError", "InstallReport", "hosts_of", "install_app"]
