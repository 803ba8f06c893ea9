"""Where agi_core keeps its files on the manager, worked out from the XDG variables in one place.

- data (``$XDG_DATA_HOME/agi_core``): the default share, when ``workers_data_path`` is not set;
- state (``$XDG_STATE_HOME/agi_core``): warm-cluster state files, the TLS files and the cache key;
- cache (``$XDG_CACHE_HOME/agi_core``): wheels, locks, wheelhouses and local app environments;
- config (``$XDG_CONFIG_HOME/agi_core``): the user's own choices, e.g. the keys whose bundles they trust.

>>> import os
>>> os.environ["XDG_STATE_HOME"] = "/tmp/state"
>>> str(state_dir("clusters"))
'/tmp/state/agi_core/clusters'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "config_dir", "data_dir", "default_share", "state_dir"]


def _base(variable: str, fallback: str) -> Path:
    return Path(os.environ.get(variable) or fallback).expanduser() / "agi_core"


def data_dir(*parts: str) -> Path:
    return _base("XDG_DATA_HOME", "~/.local/share").joinpath(*parts)


def state_dir(*parts: str) -> Path:
    return _base("XDG_STATE_HOME", "~/.local/state").joinpath(*parts)


def cache_dir(*parts: str) -> Path:
    return _base("XDG_CACHE_HOME", "~/.cache").joinpath(*parts)


def config_dir(*parts: str) -> Path:
    return _base("XDG_CONFIG_HOME", "~/.config").joinpath(*parts)


def default_share() -> Path:
    """The share used when ``workers_data_path`` is not set: ``$XDG_DATA_HOME/agi_core/share``."""
    return data_dir("share")
