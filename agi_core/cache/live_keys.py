"""Which cache keys running runs hold (`live_keys`): what `agi cache gc` must never remove, read
from the runs' records and keys files on the share.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

from ..base.errors import AgiError
from .keys import KEYS_FILE, read_run_keys
from .leftovers import GRACE_S

__all__ = ["live_keys"]


def live_keys(share: Path, apps: Iterable[str] | None = None, *, now: float | None = None) -> dict[str, dict[str, str]]:
    """app -> {key: run id} for every run that may still use its keys: records that read
    ``running`` (a dead manager's read ``abandoned`` and hold nothing), and run folders whose
    record is missing or unreadable while their keys file is younger than `GRACE_S`."""
    from ..provenance import read_record

    now = time.time() if now is None else now
    runs = Path(share) / "runs"
    names = list(apps) if apps is not None else ([p.name for p in runs.iterdir() if p.is_dir()] if runs.is_dir() else [])
    held: dict[str, dict[str, str]] = {}
    for app in names:
        for keys_file in (runs / app).glob(f"*/{KEYS_FILE}"):
            run_dir = keys_file.parent
            manifest = run_dir / "manifest.json"
            status = _finished(manifest)
            if status is None:
                try:
                    status = read_record(manifest).status if manifest.exists() else None
                except AgiError:
                    status = None
            if status is None:  # being written, or unreadable: judged by the age of its keys
                try:
                    if now - keys_file.stat().st_mtime > GRACE_S:
                        continue
                except FileNotFoundError:
                    continue
            elif status != "running":
                continue
            keys = read_run_keys(run_dir)
            if keys is None:
                continue
            bucket = held.setdefault(app, {})
            for key in keys.keys.values():
                bucket.setdefault(key, run_dir.name)
    return held


def _finished(manifest: Path) -> str | None:
    """The status of a finished record, read from the head of its manifest (a finished record
    of 100,000 partitions is not parsed whole to learn it is not running); None otherwise."""
    try:
        with manifest.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    match = re.search(rb'\n "status": "([a-z ]+)"', head)  # a top-level key, as `RunRecord.dump_json` writes it
    status = match[1].decode() if match else None
    return status if status not in (None, "running") else None
