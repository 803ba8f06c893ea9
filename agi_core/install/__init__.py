"""Install worker environments: the app, agi_core and pinned dependencies, on every host, with uv.

The public names are imported when first used: ``python -m agi_core.install.cython_build`` runs on
worker hosts, and importing this package must not load the installer (SSH, manager side) there,
which would also put it in the workers' code hash (`code_hash`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["InstallError", "InstallReport", "hosts_of", "install_app"]

if TYPE_CHECKING:
    from .installer import InstallError, InstallReport, hosts_of, install_app


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".installer", __name__), name)
    globals()[name] = value
    return value
