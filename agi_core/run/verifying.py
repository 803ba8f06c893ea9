"""Offline cache verification (`agi cache verify APP`): every entry checked, a sample recomputed.

Each entry is checked as a run checks a hit (its tag under this user's cache key, header, size,
checksum, unpickling, output files): an entry whose tag does not check is ``untrusted``, never unpickled.
With ``sample`` > 0, that many of the sound entries, chosen at random by a seed the report keeps,
are recomputed here, in this process: the entry's header names the run that stored it and the
partition; that run's plan gives the partition's payload and slot, its request the args and mode,
its ``cache_keys.json`` the keys of the partition's dependencies, whose results come from the
cache. The app's ``work()`` runs on them (`PartitionRunner`, nothing stored) and the result is
compared with the entry as a run's audit does (`agi_core.cache.audit.compare`). Nothing in the
cache is changed: a mismatching entry is reported, and `agi run APP --refresh ID` replaces it.

An entry is not verifiable when what recomputing it needs is gone (its run's record, plan or keys,
a dependency's entry) or differs today (the app's code, so its key would not be this one; the
kernels this machine runs).
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import AgiError
from ..base.share_access import ShareAccess, check_folder
from ..cache import CacheStore, CorruptEntry, EntryInfo
from ..cache.audit import compare, new_seed
from ..cache.auth import UNTRUSTED
from ..cache.keys import read_run_keys
from ..cache.maintenance import verify_store
from ..executors import JobSpec
from ..executors.partition_runner import PartitionRunner
from ..kernels.shape import ExecutionShape
from ..plan import WorkPlan
from ..provenance import RunStore, read_record

if TYPE_CHECKING:
    from ..app.env import AgiEnv

__all__ = ["EntryVerdict", "VerifyReport", "verify_cache"]

#: verdicts that make `agi cache verify` fail
BAD = ("corrupt", "untrusted", "mismatch", "failed")


@dataclass(frozen=True)
class EntryVerdict:
    """One entry: ``ok`` (sound, not recomputed), ``corrupt``, ``untrusted``, ``match``, ``mismatch``, ``failed``
    (its work() raised) or ``unverifiable``, with both digests when it was recomputed."""

    key: str
    partition: str
    run_id: str
    verdict: str
    note: str = ""
    cached: str = ""
    fresh: str = ""


@dataclass
class VerifyReport:
    """What `verify_cache` found: every entry's verdict, the sample size and its seed."""

    app: str
    root: str
    sample: int
    seed: int
    entries: list[EntryVerdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(e.verdict in BAD for e in self.entries)

    def count(self, verdict: str) -> int:
        return sum(e.verdict == verdict for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "cache": self.root, "sample": self.sample, "seed": self.seed, "ok": self.ok,
                "entries": [asdict(e) for e in self.entries]}


def verify_cache(app: str, share: Path, *, env: AgiEnv | None = None, sample: int = 0, seed: int | None = None,
                 progress: Callable[[str], None] | None = None, access: ShareAccess | None = None) -> VerifyReport:
    """Check every entry of ``app``'s cache on ``share``; recompute ``sample`` of the sound ones
    with ``env`` (the app, found: only recomputing needs its code). Raises `UnsafeFolder` when
    the cache folder is writable by others (``access``: ``[cluster.share] group_access``)."""
    if sample and env is None:
        raise ValueError("recomputing a sample needs the app's env")
    store = CacheStore.for_app(share, app)
    check_folder(store.root, access or ShareAccess(), what="cache entries", share=share)
    check_folder(store.packs_dir, access or ShareAccess(), what="cache entries")
    report = VerifyReport(app, str(store.root), sample, new_seed() if seed is None else seed)
    _, problems = verify_store(store)  # every pack read once, every index checked
    infos = {info.key: info for info in store.entries()}
    bad: dict[str, str] = {}
    for key, problem in problems:
        if not key:  # an index that cannot be read: its entries are not listed at all
            report.entries.append(EntryVerdict("", "", "", "corrupt", problem))
        else:
            bad.setdefault(key, problem)
    for key, problem in bad.items():
        info = infos.get(key)
        verdict = "untrusted" if f": {UNTRUSTED}: " in problem else "corrupt"
        report.entries.append(_verdict(info, verdict, problem) if info is not None
                              else EntryVerdict(key, "", "", verdict, problem))
    sound = [info for key, info in infos.items() if key not in bad]
    chosen = {i.key for i in random.Random(report.seed).sample(sorted(sound, key=lambda i: i.key), min(sample, len(sound)))}
    report.entries += [_verdict(info, "ok") for info in sound if info.key not in chosen]
    if not chosen:
        return report
    assert env is not None
    recompute = _Recompute(env, share, store)
    try:
        for info in sound:
            if info.key in chosen:
                if progress is not None:
                    progress(f"recomputing {info.header.get('partition', '?')} ({info.key[:12]})")
                report.entries.append(recompute(info))
    finally:
        recompute.close()
    return report


def _verdict(info: EntryInfo, verdict: str, note: str = "", **digests: str) -> EntryVerdict:
    return EntryVerdict(info.key, str(info.header.get("partition", "")), str(info.header.get("run_id", "")), verdict, note,
                        **digests)


class _Unverifiable(Exception):
    pass


class _Recompute:
    """Recomputes entries in this process, one `PartitionRunner` per stored-by run's args and mode."""

    def __init__(self, env: AgiEnv, share: Path, store: CacheStore) -> None:
        self.env, self.store, self.runs = env, store, RunStore(share)
        self.code = env.code_hash()
        self._runners: dict[str, PartitionRunner] = {}
        self._out = tempfile.TemporaryDirectory(prefix="agi-verify-")

    def __call__(self, info: EntryInfo) -> EntryVerdict:
        try:
            runner, part, slot, deps = self._prepare(info)
        except _Unverifiable as exc:
            return _verdict(info, "unverifiable", str(exc))
        outcome = runner.run(part, slot, deps)
        if outcome.status != "ok":
            return _verdict(info, "failed", f"its work() raised when recomputed:\n{(outcome.error or '').rstrip()}")
        check = compare(self.store, info.key, outcome.result, str(info.header.get("sha256", "")))
        verdict = {"match": "match", "mismatch": "mismatch"}.get(check.verdict, "unverifiable")
        note = "recomputed: another result (digests below)" if verdict == "mismatch" else check.note.removeprefix("cache audit: ")
        return _verdict(info, verdict, note, cached=check.cached, fresh=check.fresh)

    def _prepare(self, info: EntryInfo) -> tuple[PartitionRunner, Any, str, dict[str, Any]]:
        pid, run_id = str(info.header.get("partition", "")), str(info.header.get("run_id", ""))
        run_dir = self.runs.run_dir(self.env.name, run_id) if run_id else None
        if run_dir is None or not (run_dir / "manifest.json").is_file():
            raise _Unverifiable(f"the run that stored it ({run_id or 'unknown'}) has no record any more (pruned?)")
        try:
            record = read_record(run_dir / "manifest.json")
        except AgiError as exc:
            raise _Unverifiable(f"the record of run {run_id} cannot be read: {exc}") from None
        keys = read_run_keys(run_dir)
        if keys is None or keys.keys.get(pid) != info.key:
            raise _Unverifiable(f"the cache keys of run {run_id} do not give partition {pid} this key")
        if keys.code != self.code:
            raise _Unverifiable(f"the app's code changed since run {run_id}: today's code would key the partition differently")
        try:
            plan = WorkPlan.load(run_dir / record.plan.file)
        except (OSError, ValueError, AgiError) as exc:
            raise _Unverifiable(f"the plan of run {run_id} cannot be read: {exc}") from None
        part = plan.partition_map().get(pid)
        if part is None:
            raise _Unverifiable(f"the plan of run {run_id} has no partition {pid}")
        runner = self._runner(record.args, record.mode.value, _shape(record.request, record.mode.value))
        if runner.kernels.kind != keys.kernel:
            raise _Unverifiable(f"its key is for the {keys.kernel} kernels; here they would be {runner.kernels.kind}")
        deps = {}
        for dep in part.deps:
            try:
                deps[dep] = self.store.load(keys.keys[dep], touch=False).result
            except (KeyError, FileNotFoundError, CorruptEntry):
                raise _Unverifiable(f"the cache entry of its dependency {dep} is gone or corrupt") from None
        return runner, part, plan.slot_of().get(pid, "verify"), deps

    def _runner(self, args: dict[str, Any], mode: int, shape: ExecutionShape) -> PartitionRunner:
        name = json.dumps([args, mode, shape.kernels], sort_keys=True, default=str)
        runner = self._runners.get(name)
        if runner is None:
            job = JobSpec(self.env.src_dir, self.env.module_name, self.env.class_name, args, mode,
                          Path(self._out.name) / str(len(self._runners)), kernels=shape.kernels,
                          kernel_threads=shape.kernel_threads)
            runner = self._runners[name] = PartitionRunner(job)
        return runner

    def close(self) -> None:
        self._out.cleanup()


def _shape(request: dict[str, Any], mode: int) -> ExecutionShape:
    """The shape a recorded run had: its request's, or (a record older than shapes) its mode's."""
    if request.get("shape"):
        return ExecutionShape.model_validate(request["shape"])
    return ExecutionShape.of(mode, compiled=(request.get("cluster") or {}).get("compiled", "cython"))
