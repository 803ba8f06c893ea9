"""Reading run records: ``<share>/runs/<app>/<run_id>/``, newest first, folded and judged.

A record still marked ``running`` is folded with its partition log, and judged: when its manager
wrote why its final record could not be written (`writer.read_failure`: a full share), it reads
``failed`` with that cause; when its manager is gone (same host and its pid is dead, or no
heartbeat for `STALE_S`), it reads ``abandoned``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from ..base.errors import AgiError
from ..base.share_access import ShareAccess, check_folder
from .model import READABLE_SCHEMAS, AppRecord, InFlightRecord, PartitionRecord, RunRecord
from .writer import HEARTBEAT_FILE, IN_FLIGHT_FILE, LOG_FILE, MANIFEST_FILE, read_failure

__all__ = ["PID_REUSE_S", "STALE_S", "RunStore", "iso", "new_run_id", "read_record", "read_record_head"]

HEAD_BYTES = 1 << 16  # a manifest's fields before its partitions fit in this (a few KiB)
_PARTITIONS_KEY = b'\n "partitions": ['  # the last top-level key, as the writer lays it out (indent 1)

STALE_S = 30.0  # a running record of another host whose heartbeat is older than this is abandoned
PID_REUSE_S = 600.0  # on this host, a live pid with a heartbeat this old is another process now


def new_run_id() -> str:
    """Sortable by time, unique without coordination: ``20261122-153012-3f9a1c``."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_record(path: Path, access: ShareAccess | None = None) -> RunRecord:
    """One record, from its manifest (and, while it runs, its partition log). Raises `AgiError`
    naming the file when it is not a readable run record, and `UnsafeFolder` when users other
    than its owner can write it or its folder (``access``: ``[cluster.share] group_access``)."""
    path = Path(path)
    _refused(path, access or ShareAccess())
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AgiError(f"{path}: unreadable run record ({type(exc).__name__}: {exc})", fix="inspect or remove that run's folder") from None
    try:  # parsed and validated in one pass (twice as fast at 10,000 partitions: the record page opens it)
        record = RunRecord.model_validate_json(raw)
    except ValidationError:
        record = None
    if record is None or record.schema_ not in READABLE_SCHEMAS:  # the slow path says what is wrong
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("schema") not in READABLE_SCHEMAS:
                found = data.get("schema") if isinstance(data, dict) else type(data).__name__
                raise AgiError(f"{path}: not a run record (schema {found!r}; this agi_core reads {', '.join(READABLE_SCHEMAS)})",
                               fix="a newer agi_core may read it; or remove the folder")
            record = RunRecord.model_validate(data)
        except (ValueError, ValidationError) as exc:
            raise AgiError(f"{path}: unreadable run record ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                           fix="inspect or remove that run's folder") from None
    record.path = str(path)
    _reroot(record, path.parent)
    if record.status == "running":
        _fold_log(record, path.parent)
        _judge(record, path.parent)
        if record.status == "running":
            record.in_flight = _in_flight(path.parent)
    return record


def read_record_head(path: Path, access: ShareAccess | None = None) -> RunRecord:
    """A record that ended, without its partitions, from the head of its manifest only: what a list
    of runs shows. Reading and validating the 10,000 partitions of a run to list it took 100 ms;
    the head takes well under one. A running record (its log is folded in and its status judged),
    or a manifest laid out otherwise, is read whole by `read_record`."""
    path = Path(path)
    _refused(path, access or ShareAccess())
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        cut = head.find(_PARTITIONS_KEY)
        data = json.loads(head[:cut].rstrip().rstrip(b",") + b"}") if cut > 0 else None
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("schema") not in READABLE_SCHEMAS or data.get("status") == "running":
        return read_record(path, access)
    try:
        record = RunRecord.model_validate(data)
    except ValidationError:
        return read_record(path, access)
    record.path = str(path)
    _reroot(record, path.parent)
    return record


def _in_flight(run_dir: Path) -> list[InFlightRecord] | None:
    """What a running run's watchdog last saw running (`agi_core.run.watchdog`); None: unknown."""
    try:
        data = json.loads((run_dir / IN_FLIGHT_FILE).read_text())
        return [InFlightRecord.model_validate(item) for item in data]
    except (OSError, ValueError, ValidationError):  # not written yet, or replaced while read
        return None


def _reroot(record: RunRecord, run_dir: Path) -> None:
    """Point the record's paths at where it is now: a record moved to another share (`agi runs
    import`, a copied share) names its out/ folder and cache entries where it was written."""
    out_dir = str(run_dir / "out")
    if not record.out_dir or record.out_dir == out_dir:
        return
    record.out_dir = out_dir
    if record.cache and run_dir.parent.parent.name == "runs":  # only inside a share's layout is its cache known
        old_cache = record.cache
        record.cache = str(run_dir.parent.parent.parent / "cache" / record.app.name)  # <share>/runs/<app>/<run>
        for part in record.partitions:
            if part.result_location and part.result_location.startswith(old_cache):
                part.result_location = record.cache + part.result_location[len(old_cache):]


def _fold_log(record: RunRecord, run_dir: Path) -> None:
    """Overlay the outcomes logged so far onto the record's partitions."""
    try:
        text = (run_dir / LOG_FILE).read_text()
    except FileNotFoundError:
        return
    logged: dict[str, PartitionRecord] = {}
    for line in text.splitlines():
        try:
            part = PartitionRecord.model_validate_json(line)
        except ValidationError:  # the last line of a killed writer may be cut short
            continue
        logged[part.id] = part
    if not logged:
        return
    record.partitions = [logged.pop(p.id, p) for p in record.partitions] + list(logged.values())
    counts = {status: 0 for status in ("ok", "failed", "skipped", "cached")}
    for part in record.partitions:
        if part.status in counts:
            counts[part.status] += 1
    record.totals = record.totals.model_copy(update={**counts, "not_run": record.totals.partitions - sum(counts.values())})


def _judge(record: RunRecord, run_dir: Path) -> None:
    """Mark a running record failed when its manager said why it could not write the record,
    else abandoned when its manager is gone."""
    failure = read_failure(run_dir)
    if failure is not None:
        record.status = "failed"
        record.error = str(failure.get("error") or "the run's final record could not be written")
        ended = failure.get("ended")
        if isinstance(ended, int | float):
            record.ended = iso(ended)
        return
    try:
        beat = float((run_dir / HEARTBEAT_FILE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        beat = 0.0
    if beat:
        record.heartbeat = iso(beat)
    manager = record.manager
    age = time.time() - beat if beat else 0.0
    if manager.host == os.uname().nodename and manager.pid > 0:  # platform.node(), without importing platform
        # This host can ask the kernel: a live manager may be busy in a long call that holds
        # the GIL (its heartbeat thread waits), so only a dead pid, or a pid long silent (reused
        # by another process since), means abandoned.
        if not _pid_alive(manager.pid):
            why = f"its manager (pid {manager.pid} on {manager.host}) is gone"
        elif age > PID_REUSE_S:
            why = f"no heartbeat from its manager (pid {manager.pid}) since {iso(beat)}"
        else:
            return
    elif age > STALE_S:
        why = f"no heartbeat from its manager ({manager.host} pid {manager.pid}) since {iso(beat)}"
    else:
        return
    record.status = "abandoned"
    record.error = record.error or f"abandoned: {why}; the partitions it finished are kept"


def _refused(path: Path, access: ShareAccess) -> None:
    """Raise `UnsafeFolder` when the record at ``path`` is not read because others can write it."""
    share = path.parents[3] if len(path.parents) > 3 and path.parents[2].name == "runs" else None
    check_folder(path.parent, access, what="run records", share=share, file=path)


@dataclass(frozen=True)
class RunStore:
    """The run records under one share; ``access``: ``[cluster.share] group_access`` (which folders may be read)."""

    share: Path
    access: ShareAccess = ShareAccess()

    @property
    def root(self) -> Path:
        return self.share / "runs"

    def run_dir(self, app: str, run_id: str) -> Path:
        return self.root / app / run_id

    def manifests(self, app: str | None = None) -> Iterator[Path]:
        pattern = f"{app}/*/{MANIFEST_FILE}" if app else f"*/*/{MANIFEST_FILE}"
        yield from self.root.glob(pattern)

    def list(self, app: str | None = None) -> list[RunRecord]:
        """Every record, newest first; one that cannot be read is listed with status ``unreadable``."""
        records = []
        for path in self.manifests(app):
            try:
                records.append(read_record(path, self.access))
            except AgiError as exc:
                records.append(RunRecord(run_id=path.parent.name, status="unreadable", app=AppRecord(name=path.parent.parent.name),
                                         error=exc.message, path=str(path)))
        return sorted(records, key=lambda r: (r.started, r.run_id), reverse=True)

    def find(self, run: str) -> RunRecord:
        """A record by run id, unique id prefix, path (to a run folder or its manifest), or ``last``."""
        candidate = Path(run)
        if candidate.is_dir() or candidate.is_file():
            return read_record(candidate / MANIFEST_FILE if candidate.is_dir() else candidate, self.access)
        records = self.list()
        if run in ("last", "latest"):
            if not records:
                raise AgiError(f"no runs recorded under {self.root}", fix="run an app first: agi run APP")
            return records[0]
        matches = [r for r in records if r.run_id.startswith(run)]
        if len(matches) == 1:
            if matches[0].status == "unreadable" and matches[0].path:
                _refused(Path(matches[0].path), self.access)  # a folder others can write: said as the error, with its fix
            return matches[0]
        if not matches:
            raise AgiError(f"no run '{run}' under {self.root}", fix="list runs with `agi runs list`")
        raise AgiError(f"run id prefix '{run}' matches {len(matches)} runs", fix="give more characters of the id")
