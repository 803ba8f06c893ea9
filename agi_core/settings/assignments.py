"""``KEY=VALUE`` assignments (``--set``) as settings: the dotted key and TOML value of one
(`parse_assignment`), the ``[args]`` and ``[cluster]`` overrides of several, and a call's overrides.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from ..base.errors import SettingsError

__all__ = ["assignments_to_overrides", "call_overrides", "parse_assignment"]


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """Parse ``key=value`` from the command line: a dotted key, a TOML value (else a plain string).

    A key without a table (``width=800``) means ``args.width``.

    >>> parse_assignment("width=800")
    (['args', 'width'], 800)
    >>> parse_assignment('cluster.workers."127.0.0.1"=2')
    (['cluster', 'workers', '127.0.0.1'], 2)
    >>> parse_assignment("cluster.scheduler=10.0.0.1:8786")
    (['cluster', 'scheduler'], '10.0.0.1:8786')
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"invalid assignment {text!r}: expected KEY=VALUE", fix="write e.g. --set width=800 or --set cluster.pool=true")
    try:
        # Let the TOML parser split the dotted key, so quoted parts ("10.0.0.2") stay whole.
        node: Any = tomllib.loads(f"{key.strip()} = 0")
        path: list[str] = []
        while isinstance(node, dict):
            (name,) = node.keys()
            path.append(name)
            node = node[name]
    except (tomllib.TOMLDecodeError, ValueError):
        raise SettingsError(f"invalid key {key!r} in {text!r}", fix='use a dotted key, quoting parts with dots: cluster.workers."10.0.0.2"=2') from None
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    if len(path) == 1:
        path = ["args", *path]
    if path[0] not in ("args", "cluster", "cache"):
        raise SettingsError(f"invalid key {key!r}: settings live under 'args', 'cluster' or 'cache'",
                            fix=f"write args.{key}, cluster.{key} or cache.{key}")
    return path, value


def call_overrides(scheduler: str | None, workers: Mapping[str, Any] | None, cluster: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``[cluster]`` overrides of a call: its ``cluster=`` mapping plus ``scheduler=`` and ``workers=``."""
    overrides = dict(cluster or {})
    if scheduler is not None:
        overrides["scheduler"] = scheduler
    if workers is not None:
        overrides["workers"] = dict(workers)
    return overrides or None


def assignments_to_overrides(assignments: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Turn ``--set`` assignments into (args, cluster) override mappings."""
    tables: dict[str, dict[str, Any]] = {"args": {}, "cluster": {}}
    for text in assignments:
        path, value = parse_assignment(text)
        if path[0] not in tables:
            raise SettingsError(f"--set {text}: the [{path[0]}] table is not a per-run setting",
                                fix=f"save it in app_settings.toml with `agi settings APP --set {text}`"
                                    + (", or give `agi run --audit FRACTION`" if path[:2] == ["cache", "audit"] else ""))
        node = tables[path[0]]
        for part in path[1:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tables["args"], tables["cluster"]
