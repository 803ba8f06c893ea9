"""The GPUs `agi install` and `agi doctor` found on each host, kept in the state folder (`remember_gpus`)
and read back by the plan and the cluster (`gpus_of`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..base.atomic import write_text_atomic
from ..base.hosts import HostAddress, is_local_host
from ..base.paths import state_dir
from .model import Gpu
from .probe import local_gpus

__all__ = ["gpus_of", "remember_gpus", "remembered_gpus"]


def _facts_file(host: str) -> Path:
    name = HostAddress.parse(host).host
    return state_dir("hosts", re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".json")


def remember_gpus(host: str, gpus: Sequence[Gpu]) -> None:
    """Keep what a probe of ``host`` (a worker-map key) found, for later plans and clusters."""
    path = _facts_file(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"schema": "agi.host-gpus.v1", "host": host, "gpus": [asdict(g) for g in gpus]}))


def remembered_gpus(host: str) -> list[Gpu] | None:
    """What the last probe of ``host`` found; None when it was never probed (or the file is unreadable)."""
    try:
        data = json.loads(_facts_file(host).read_text())
        return [Gpu(int(g["index"]), str(g["name"]), int(g["memory_mib"]), str(g.get("uuid", ""))) for g in data["gpus"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def gpus_of(hosts: Sequence[str] | Mapping[str, Any]) -> dict[str, list[Gpu]]:
    """Host → its GPUs: this machine's probed now, other hosts' as `agi install` / `agi doctor` last
    found them (none when never probed: declare ``capabilities`` or ``gpus`` for such hosts)."""
    here: list[Gpu] | None = None
    found = {}
    for host in hosts:
        if is_local_host(host):
            here = local_gpus() if here is None else here
            found[host] = here
        else:
            found[host] = remembered_gpus(host) or []
    return found
