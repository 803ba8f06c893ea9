"""Files served from the share: only below a run folder of the share, checked against traversal."""

from __future__ import annotations

import re
from pathlib import Path

from ..base.errors import AgiError
from ..base.paths import default_share
from ..provenance import RunStore
from .config import UiConfig

__all__ = ["inside", "run_store", "safe_name"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def run_store(config: UiConfig) -> RunStore:
    return RunStore(config.share or default_share())


def safe_name(name: str) -> str:
    """An app name or run id: one path component, no ``..``, no separators."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise AgiError(f"invalid name {name!r}", fix="use the links the pages give")
    return name


def inside(root: Path, relative: str) -> Path:
    """``root / relative`` resolved (links followed), refused unless it stays inside ``root``."""
    if "\x00" in relative:  # the OS refuses it (ValueError): not a file here, so a 404, not a 500
        raise AgiError(f"no file {relative!r} in {root.name}", fix="use the links the pages give")
    root = root.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise AgiError(f"{relative!r} is outside the run folder", fix="use the links the pages give")
    if not target.is_file():
        raise AgiError(f"no file {relative!r} in {root.name}", fix="use the links the pages give")
    return target
