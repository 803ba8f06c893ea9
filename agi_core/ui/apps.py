"""The apps a UI server can show, and the `AgiEnv` of one (found again on every request: settings
files change under it)."""

from __future__ import annotations

from pathlib import Path

from ..app.env import AgiEnv, default_apps_paths, discover_apps
from .config import UiConfig

__all__ = ["app_names", "env_for"]


def app_names(config: UiConfig) -> list[str]:
    paths = list(config.apps_path) if config.apps_path is not None else default_apps_paths()
    return sorted(discover_apps(paths))


def env_for(config: UiConfig, app: str) -> AgiEnv:
    return AgiEnv(app=app, apps_path=[Path(p) for p in config.apps_path] if config.apps_path is not None else None)
