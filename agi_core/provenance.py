"""Run records: ``<share>/runs/<app>/<run_id>/manifest.json`` (``agi.run.v1``), written atomically.

A record is written when a run starts (status ``running``) and rewritten when it ends (``ok``,
``failed`` or ``interrupted``), so even a killed manager leaves a trace.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import AgiError

__all__ = ["RUN_SCHEMA", "RunStore", "iso", "new_run_id"]

RUN_SCHEMA = "agi.run.v1"


def new_run_id() -> str:
    """Sortable by time, unique without coordination: ``20261122-153012-3f9a1c``."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunStore:
    """The run records under one share."""

    share: Path

    @property
    def root(self) -> Path:
        return self.share / "runs"

    def run_dir(self, app: str, run_id: str) -> Path:
        return self.root / app / run_id

    def manifests(self, app: str | None = None) -> Iterator[Path]:
        pattern = f"{app}/*/manifest.json" if app else "*/*/manifest.json"
        yield from self.root.glob(pattern)

    def list(self, app: str | None = None) -> list[dict[str, Any]]:
        """Every readable record, newest first (unreadable ones are listed with status ``unreadable``)."""
        records = []
        for path in self.manifests(app):
            try:
                records.append(json.loads(path.read_text()) | {"path": str(path)})
            except (OSError, json.JSONDecodeError) as exc:
                records.append({"run_id": path.parent.name, "app": {"name": path.parent.parent.name},
                                "status": "unreadable", "error": str(exc), "path": str(path), "started": ""})
        return sorted(records, key=lambda r: (r.get("started") or "", r.get("run_id", "")), reverse=True)

    def find(self, run: str) -> dict[str, Any]:
        """A record by run id, unique id prefix, path, or ``last``."""
        if Path(run).is_file() or Path(run).is_dir():
            path = Path(run) / "manifest.json" if Path(run).is_dir() else Path(run)
            return json.loads(path.read_text()) | {"path": str(path)}
        records = self.list()
        if run in ("last", "latest"):
            if not records:
                raise AgiError(f"no runs recorded under {self.root}", fix="run an app first: agi run APP")
            return records[0]
        matches = [r for r in records if r.get("run_id", "").startswith(run)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise AgiError(f"no run '{run}' under {self.root}", fix="list runs with `agi runs list`")
        raise AgiError(f"run id prefix '{run}' matches {len(matches)} runs", fix="give more characters of the id")


def now() -> float:
    return time.time()
