"""`agi runs show --why ID` and `--dump-keys`: why a partition was computed or taken from the cache
(what changed in its key since the last run that stored it), and the parts of the cache keys."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..cache import RunKeys
    from ..provenance import RunRecord

__all__ = ["key_dump", "keys_of", "no_keys_reason", "why_data"]


def _run_dir(record: RunRecord) -> Path:
    return Path(str(record.path)).parent


def keys_of(record: RunRecord) -> RunKeys | None:
    from ..cache.keys import read_run_keys

    return read_run_keys(_run_dir(record))


def no_keys_reason(record: RunRecord) -> str:
    if record.cache is None:
        return "it ran with --no-cache: it neither used nor stored cache entries"
    return "its cache_keys.json is missing or unreadable"


def key_dump(keys: RunKeys, pids: list[str] | None = None) -> dict[str, Any]:
    """What each key of ``pids`` (default: all) was made from, as ``--dump-keys`` prints it."""
    from ..base.errors import AgiError

    unknown = [pid for pid in pids or () if pid not in keys.keys]
    if unknown:
        raise AgiError(f"the run's cache keys have no partition {unknown[0]}", fix="see its partitions with --all")
    parts = {}
    for pid in pids if pids is not None else list(keys.keys):
        reads, payload, deps, *declared = keys.parts.get(pid, [None, "", []])
        names = sorted(keys.args) if reads is None else list(reads)
        parts[pid] = {"key": keys.keys[pid], "reads": reads, "args": {name: keys.args.get(name, "<absent>") for name in names},
                      "payload": payload, "deps": {dep: keys.keys.get(dep, "") for dep in deps}}
        if declared:
            parts[pid]["inputs"] = {path: keys.inputs.get(path, "") for path in declared[0]}
    return {"format": keys.format, "code": keys.code, "kernel": keys.kernel, "inputs_mode": keys.inputs_mode, "partitions": parts}


def why_data(record: RunRecord, pid: str) -> dict[str, Any]:
    """Why ``pid`` was computed in ``record``'s run (or taken from the cache): its cache status
    and key there, the latest earlier run of the app whose keys have it, `explain`'s reasons
    when the key changed, and what made an unchanged key miss."""
    from ..base.errors import AgiError
    from ..cache import explain

    part = next((p for p in record.partitions if p.id == pid), None)
    if part is None:
        ids = ", ".join(p.id for p in record.partitions[:5])
        raise AgiError(f"run {record.run_id} has no partition '{pid}'",
                       fix=f"its partitions are {ids}{', …' if len(record.partitions) > 5 else ''} (agi runs show {record.run_id} --all)")
    data: dict[str, Any] = {"run_id": record.run_id, "app": record.app.name, "partition": pid, "status": part.status,
                            "cache": part.cache, "key": part.cache_key, "note": part.note or None,
                            "refreshed": pid in record.refreshed, "location": part.result_location,
                            "earlier": None, "key_changed": None, "reasons": [], "verdict": ""}
    keys = keys_of(record)
    if keys is None or pid not in keys.keys:
        why = no_keys_reason(record) if keys is None else "its cache keys have no such partition"
        data["verdict"] = f"run {record.run_id} has no cache key for {pid}: {why}; it was computed"
        return data
    data["key"] = keys.keys[pid]
    earlier, old = _earlier(record, pid)
    if part.cache == "hit":
        stored_by = _stored_by(part.result_location, part.cache_key or "")
        source = f"its result came from the cache (entry stored by run {stored_by})" if stored_by else "its result came from the cache"
    else:
        source = ""
    if earlier is None or old is None:
        data["verdict"] = (f"no earlier recorded run of {record.app.name} had partition {pid} in its cache keys; "
                           + (source or "nothing cached could hold it, so it was computed"))
        return data
    old_part = next((p for p in earlier.partitions if p.id == pid), None)
    data["earlier"] = {"run_id": earlier.run_id, "status": earlier.status, "key": old.keys[pid],
                       "partition_status": old_part.status if old_part else None,
                       "partition_cache": old_part.cache if old_part else None,
                       "note": (old_part.note or None) if old_part else None}
    reasons = explain(pid, old=old, new=keys, old_payloads=_PlanPayloads(_run_dir(earlier)),
                      new_payloads=_PlanPayloads(_run_dir(record)))
    data["key_changed"] = bool(reasons)
    data["reasons"] = reasons
    if reasons:
        data["verdict"] = (f"its key changed since run {earlier.run_id}"
                           + (f"; {source}: an entry with the new key was in the cache already" if source else ", so it was computed"))
    elif source:
        data["verdict"] = f"its key is unchanged since run {earlier.run_id}; {source}"
    else:
        data["verdict"] = f"its key is unchanged since run {earlier.run_id}; " + _why_computed(record, part, old_part, earlier.run_id)
    return data


class _PlanPayloads(Mapping[str, Any]):
    """A run's partition payloads from its plan.json, read only when `explain` asks for one (a
    payload changed and it names the place inside it); empty when the plan cannot be read."""

    def __init__(self, run_dir: Path) -> None:
        self._run_dir = run_dir
        self._payloads: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._payloads is None:
            from ..base.errors import PlanError
            from ..plan import WorkPlan

            try:
                plan = WorkPlan.load(self._run_dir / "plan.json")
                self._payloads = {p.id: p.payload for p in plan.partitions}
            except PlanError:
                self._payloads = {}
        return self._payloads

    def __getitem__(self, pid: str) -> Any:
        return self._load()[pid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def _why_computed(record: RunRecord, part: Any, old_part: Any, earlier: str) -> str:
    """Why a partition whose key did not change was not taken from the cache."""
    if part.status in ("skipped", "not run"):
        return f"it was not computed in this run (status: {part.status})"
    if part.cache == "untrusted":
        return ("its cache entry did not authenticate under your cache key (written by someone else, or altered), so it was "
                "not loaded: it was removed and the partition computed again") + (f" ({part.note})" if part.note else "")
    if part.cache == "corrupt":
        return "its cache entry was corrupt, so it was removed and the partition computed again" + (
            f" ({part.note})" if part.note else "")
    if part.id in record.refreshed:
        return f"it was recomputed on request (--refresh {part.id})"
    if part.cache in ("audited", "mismatch"):
        return ("it was a cache hit chosen for the cache audit (--audit), so it was recomputed and compared with its entry: "
                + ("the same result" if part.cache == "audited" else "another result, which was used and replaced the entry"))
    if old_part is None:
        return f"run {earlier} has its key but no record of the partition, so no entry is known to have been stored"
    if old_part.status != "ok" and old_part.status != "cached":
        return f"run {earlier} did not store its result (the partition's status there: {old_part.status}), so it was computed"
    if old_part.cache not in ("stored", "hit", "audited", "mismatch"):
        why = f": {old_part.note}" if old_part.note else ""
        return f"run {earlier} did not store its result{why}, so it was computed"
    return (f"its entry (which run {earlier} {'stored' if old_part.cache in ('stored', 'mismatch') else 'used'}) was missing when this run "
            "started: removed since by `agi cache gc` or `agi cache clear` (or by a run that found it corrupt), so it was computed")


def _stored_by(location: str | None, key: str) -> str | None:
    """The run that stored the cache entry at ``location`` (from its header), if it is still there."""
    from ..cache import CacheStore

    header = CacheStore.header_at(location, key) if location else None
    return (header or {}).get("run_id") or None


def _earlier(record: RunRecord, pid: str) -> tuple[RunRecord | None, RunKeys | None]:
    """The latest run of the same app, before ``record``'s, whose cache keys have ``pid``."""
    from ..provenance import RunStore

    manifest = Path(str(record.path))
    store = RunStore(manifest.parents[3])
    mine = (record.started, record.run_id)
    for other in store.list(manifest.parent.parent.name):  # newest first
        if (other.started, other.run_id) >= mine or other.status == "unreadable":
            continue
        keys = keys_of(other)
        if keys is not None and pid in keys.keys:
            return other, keys
    return None, None


# -- prune -------------------------------------------------------------------------------------
