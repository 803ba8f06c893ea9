"""What the cache did in one run, for the cache page (`cache_page.CachePage`): how many
partitions had each cache status, the time the hits saved, the bytes the run stored.

Read from the record's partition lines (field ``cache``) and, for the time and the bytes, from the
cache itself, cheaply: one pack index per pack the record names, and the records of the runs that
stored the entries it hit (the entry's ``run_id``), never the entries' bodies.

* **Time saved** is the sum of the recorded durations of the hits' first computation (the
  partition line with the same cache key in the run that stored the entry). Entries whose storing
  run is not on this share any more (pruned, or an imported run) are estimated at the mean of those
  found; when none is found, every hit is estimated at the mean of this run's computed partitions.
  `CacheFacts.saved_how` says which.
* **Bytes stored** are the pickled results of the entries this run stored, from their pack's
  index (output files kept beside an entry are not counted); entries gone since (``agi cache
  gc``) are left out, and `CacheFacts.stored_how` says how many.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..provenance import PartitionRecord, RunRecord

__all__ = ["STATUSES", "CacheFacts", "cache_facts", "format_seconds", "used_cache"]

#: the cache statuses of a partition line, in the order the page shows them
STATUSES = ("hit", "miss", "stored", "corrupt", "untrusted", "mismatch", "audited")
_STORED = ("stored", "mismatch")  # statuses whose partition wrote (or replaced) its entry


@dataclass(frozen=True)
class CacheFacts:
    counts: dict[str, int]
    saved_s: float | None  # None: nothing to go by
    saved_how: str
    stored_bytes: int | None  # None: no stored entry could be found
    stored_how: str


def format_seconds(seconds: float) -> str:
    """``12.3 s``, ``4.56 ms``, ``78 µs``: a toy partition's microseconds do not read as 0.000 s."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.3f} s"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"


def used_cache(record: RunRecord) -> bool:
    """Whether the run used the cache: it ran with one (not ``--no-cache``) and a partition line
    says what the cache did for it."""
    return record.cache is not None and any(part.cache for part in record.partitions)


def cache_facts(record: RunRecord, run_dir: Path) -> CacheFacts:
    counts = dict.fromkeys(STATUSES, 0)
    for part in record.partitions:
        if part.cache:
            counts[part.cache] = counts.get(part.cache, 0) + 1
    saved, saved_how = _saved(record, run_dir)
    stored, stored_how = _stored_bytes([p for p in record.partitions if p.cache in _STORED])
    return CacheFacts(counts, saved, saved_how, stored, stored_how)


def _entry_fields(parts: list[PartitionRecord], name: str) -> dict[str, Any]:
    """Cache key -> field ``name`` of its entry's header, for the entries of ``parts`` still in
    the cache: one read of each pack index (or single ``.entry`` file's first line)."""
    from ..cache import CacheStore, CorruptEntry
    from ..cache.packs import INDEX_SUFFIX, PACK_SUFFIX, read_index

    by_location: dict[str, list[str]] = defaultdict(list)
    for part in parts:
        if part.result_location and part.cache_key:
            by_location[part.result_location].append(part.cache_key)
    found: dict[str, Any] = {}
    for location, keys in by_location.items():
        if not location.endswith(PACK_SUFFIX):
            for key in keys:  # a single-file entry: its header line
                header = CacheStore.header_at(location, key)
                if header is not None and header.get(name) is not None:
                    found[key] = header[name]
            continue
        try:
            index = read_index(Path(location).with_suffix(INDEX_SUFFIX))
        except (OSError, CorruptEntry):
            continue  # rewritten or removed since: those entries are not found
        for key in keys:
            i = index.position.get(key)
            if i is None:
                continue
            value = index.sizes[i] if name == "size" else index.value(i, name)
            if value is not None:
                found[key] = value
    return found


def _first_durations(hits: list[PartitionRecord], runs: dict[str, Any], record: RunRecord,
                     run_dir: Path) -> tuple[dict[str, float], list[str]]:
    """Cache key -> the recorded duration of its computation in the run that stored it, and the ids of the runs read."""
    from ..base.errors import AgiError
    from ..provenance import read_record

    wanted = {part.cache_key for part in hits}
    durations: dict[str, float] = {}
    read: list[str] = []
    for run_id in sorted({str(r) for r in runs.values()} - {record.run_id}):
        try:
            other = read_record(run_dir.parent / run_id / "manifest.json")
        except (AgiError, OSError):
            continue  # pruned, or not on this share (an imported run)
        read.append(run_id)
        for part in other.partitions:
            if part.cache_key in wanted and part.cache in _STORED and part.end > 0:
                durations[part.cache_key] = part.duration_s
    return durations, read


def _saved(record: RunRecord, run_dir: Path) -> tuple[float | None, str]:
    hits = [part for part in record.partitions if part.cache == "hit"]
    if not hits:
        return 0.0, "no cache hits"
    durations, runs = _first_durations(hits, _entry_fields(hits, "run_id"), record, run_dir)
    known = [durations[part.cache_key] for part in hits if part.cache_key in durations]
    named = f"run{'s' if len(runs) > 1 else ''} {', '.join(runs[:3])}{' …' if len(runs) > 3 else ''}"
    if len(known) == len(hits):
        return sum(known), f"recorded: the {len(hits)} entries' first computation ({named})"
    if known:
        mean = sum(known) / len(known)
        return (sum(known) + mean * (len(hits) - len(known)),
                f"recorded for {len(known)} of {len(hits)} hits ({named}); the other {len(hits) - len(known)} "
                "estimated at their mean (the runs that stored them are not on this share)")
    computed = [part.duration_s for part in record.partitions if part.cache not in (None, "hit") and part.end > 0]
    if computed:
        mean = sum(computed) / len(computed)
        return (mean * len(hits), f"estimated: {len(hits)} hits x the mean of this run's {len(computed)} computed "
                f"partitions ({format_seconds(mean)}); the runs that stored the entries are not on this share")
    return None, "n/a: the runs that stored the entries are not on this share, and this run computed nothing to estimate from"


def _stored_bytes(stored: list[PartitionRecord]) -> tuple[int | None, str]:
    if not stored:
        return 0, "no entry stored"
    sizes = _entry_fields(stored, "size")
    if not sizes:
        return None, f"n/a: none of the {len(stored)} entries stored is in the cache now (agi cache gc)"
    gone = len(stored) - len(sizes)
    how = f"{len(sizes)} entries' pickled results" + (f"; {gone} no longer in the cache" if gone else "")
    return sum(int(size) for size in sizes.values()), how
