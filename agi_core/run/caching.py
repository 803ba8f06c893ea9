"""The result cache, seen from one run: keys for its plan, the entries it can reuse, the hits it
audits, and what the record says about each partition (``hit``, ``miss``, ``stored``, ``corrupt``,
``untrusted``, ``audited``, ``mismatch``).

Before anything runs, every partition gets its key (`agi_core.cache.plan_keys`), the keys are
written to ``<run>/cache_keys.json`` (what `agi runs show --why` compares, and what `agi cache gc`
keeps while the run runs), and every entry found is loaded and checked. Loaded results are known
to the graph driver from the start; only the rest is handed to an executor, whose workers store
what they compute straight into the cache. With ``--audit F``, a share F of the hits is handed to
the executor too, with each entry's digest: the worker compares what it computes with it
(`agi_core.cache.audit`), and the run uses the fresh result.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.atomic import write_bytes_atomic
from ..base.collection_pause import making_long_lived
from ..base.errors import PlanError
from ..base.events import EventSink, Notice
from ..base.share_access import ShareAccess, check_folder
from ..base.share_io import share_error
from ..cache import CacheStore, CorruptEntry, RunKeys, plan_keys
from ..cache.audit import audit_sample
from ..cache.auth import UNTRUSTED, ensure_key
from ..cache.entries import Entry
from ..cache.inputs import HASHES_FILE, InputStamper
from ..cache.keys import KEYS_FILE
from ..cache.keys_memo import KeysMemo, memo_id
from ..cache.loading import load_grouped
from ..cache.store import UNLOADABLE, CacheView
from ..executors import Outcome
from ..plan import HasResult
from ..provenance import AuditMismatch, AuditRecord
from ..provenance.lines import CachedLines, partition_line

if TYPE_CHECKING:
    from ..app.env import AgiEnv
    from ..plan import WorkPlan
    from .request import RunRequest

__all__ = ["RunCache"]

_SHOWN = 5  # mismatches announced one by one as they arrive
_HIT_NOTE = "result from the cache"


@dataclass
class RunCache:
    """The cache of one run: its store, the plan's keys, what was found, and what to refresh."""

    store: CacheStore
    keys: RunKeys
    refresh: frozenset[str] = frozenset()
    hits: dict[str, Outcome] = field(default_factory=dict)  # found and checked, with their results
    corrupt: dict[str, str] = field(default_factory=dict)  # partition -> why its entry was not used
    #: partition -> where its entry was and why it is not authenticated (never unpickled; computed again)
    untrusted: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # for the run's record: said once each
    #: partition -> why its sound entry could not be loaded here (a module this process lacks): kept, not used
    unloadable: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # partition -> its hit's digest (header sha256)
    audit: AuditRecord | None = None  # with --audit: the share, the seed, and what the audit found
    audits: dict[str, Outcome] = field(default_factory=dict)  # hits recomputed for the audit (their hit outcomes)
    memo: KeysMemo | None = None  # where this plan's keys are remembered for an unchanged re-run
    memo_used: bool = False  # the keys came from the memo (not hashed again)

    @classmethod
    def open(cls, env: AgiEnv, request: RunRequest, plan: WorkPlan, *, kernel: str | None = None) -> RunCache:
        """Key the plan. ``kernel``: the kernel kind the partitions will run (known for local
        runs); by default the one the mode asks for (on a cluster, each worker picks its own).
        Declared input files are stamped here, where the plan is made (a missing one is a
        `PlanError` naming the partition and the path)."""
        store = CacheStore.for_app(request.share, env.name, key=ensure_key())  # the owner's key: made on first use
        access = ShareAccess.of(request.cluster.share.group_access)  # no entry comes from a folder others can write
        check_folder(store.root, access, what="cache entries", share=request.share)
        check_folder(store.packs_dir, access, what="cache entries")
        stamper = InputStamper(request.share, mode=request.cache.inputs, hashes_file=store.root / HASHES_FILE)
        code, kind = env.code_hash(), kernel or request.shape.kernels[0]
        memo = KeysMemo(store.root, memo_id(fingerprint=plan.fingerprint, code=code, kernel=kind, inputs_mode=stamper.mode))
        keys = memo.find(plan.partitions, code=code, kernel=kind, stamper=stamper)
        reused = keys is not None
        if keys is None:
            keys = plan_keys(plan.partitions, code=code, args=request.args, kernel=kind, stamper=stamper)
        stamper.save()
        unknown = sorted(set(request.refresh) - set(keys.keys))
        if unknown:
            raise PlanError(f"--refresh names partition(s) {', '.join(unknown[:5])} that the plan does not have",
                            fix="see the partition ids with `agi distrib APP`")
        return cls(store, keys, frozenset(request.refresh), memo=memo, memo_used=reused)

    def write_keys(self, run_dir: Path) -> None:
        """Keep the keys beside the run's record (for `agi runs show --why` and `agi cache gc`).
        What each key was made of is needed only there: the run keeps the keys alone (at
        1,000,000 partitions, the parts are 200 MB of the manager's memory)."""
        target = run_dir / KEYS_FILE
        if self.memo_used and self.memo is not None:  # the keys came from the memo, without their parts
            if not self.memo.link_found(target):  # linked: the same keys, on the share
                write_bytes_atomic(target, self.memo.text)
        else:
            write_bytes_atomic(target, self.keys.json_chunks())
        if self.memo is not None:
            self.memo.keep(target)
            self.memo.text = b""
        self.keys = replace(self.keys, parts={}, inputs={})

    def load(self, plan: WorkPlan, out_dir: Path, emit: EventSink) -> dict[str, HasResult]:
        """Load every usable entry of the plan's keys, restoring their output files into
        ``out_dir``; a corrupt entry is removed (the partition is computed again) and reported."""
        with making_long_lived():  # every hit lives as long as the run
            return self._load(plan, out_dir, emit)

    def _load(self, plan: WorkPlan, out_dir: Path, emit: EventSink) -> dict[str, HasResult]:
        slot_of = plan.slot_of()
        wanted = {key: pid for pid, key in self.keys.keys.items() if pid not in self.refresh}
        known: dict[str, HasResult] = {}
        view = self.store.view(wanted)  # every index read once; then each pack once, not a file per key
        again = [key for key, problem in self._take_entries(view, view.keys(), wanted, out_dir, slot_of, known) if problem != ""]
        if again:
            # What failed or was gone may have been replaced meanwhile (another run's --refresh, a
            # gc that rewrote or merged its pack, or removed the output files of a superseded
            # copy): look once more. Only what fails where a fresh look finds it is corrupt, and
            # only that copy is removed, never a newer one written since.
            fresh = self.store.view(set(again))
            bad = [(key, problem) for key, problem in self._take_entries(fresh, fresh.keys(), wanted, out_dir, slot_of, known)
                   if problem]
            for key, problem in bad:
                (self.untrusted if f": {UNTRUSTED}: " in problem else self.corrupt)[wanted[key]] = problem
            try:
                self.store.discard_copies((key, fresh.places[key]) for key, _ in bad)
            except OSError as exc:  # e.g. a read-only share: the entries stay, never served
                emit(Notice(f"corrupt cache entries could not be removed ({exc}); the next run finds them corrupt again"))
        for problem in view.problems[:3]:
            emit(Notice(f"a cache index was not used: {problem}"))
        if self.untrusted:
            count = len(self.untrusted)
            warning = (f"cache: untrusted: {count} cache entr{'y' if count == 1 else 'ies'} did not authenticate under this "
                       f"user's cache key and {'was' if count == 1 else 'were'} not loaded (computed again, the fresh results "
                       f"replace them): {next(iter(self.untrusted.values()))}")
            self.warnings.append(warning)
            emit(Notice(warning, level="warning"))
        if self.corrupt:
            emit(Notice(f"{len(self.corrupt)} cache entr{'y was' if len(self.corrupt) == 1 else 'ies were'} corrupt and will be "
                        f"recomputed: {next(iter(self.corrupt.values()))}", level="warning"))
        if self.unloadable:
            emit(Notice(f"{len(self.unloadable)} cache entr{'y' if len(self.unloadable) == 1 else 'ies'} could not be loaded here "
                        f"and will be recomputed: {next(iter(self.unloadable.values()))}", level="warning"))
        return known

    def _take_entries(self, view: CacheView, keys: Iterable[str], wanted: dict[str, str], out_dir: Path,
                      slot_of: dict[str, str], known: dict[str, HasResult]) -> Iterator[tuple[str, str | None]]:
        """Load ``keys`` from ``view``: each one usable becomes a hit (in ``known`` and `hits`),
        restoring its output files. Gives ``(key, problem)`` for each one that is not: None when
        it is gone, "" when it is sound but cannot be loaded here (kept), else why it cannot be
        trusted (the caller looks again before it calls it corrupt)."""
        hits, digests, lines, slots = self.hits, self.digests, CachedLines(_HIT_NOTE), {*slot_of.values(), ""}
        for plain, loaded, rest in load_grouped(self.store, view, keys):
            if loaded:  # the usual pack: its hits in one loop (a re-run of 100,000 partitions is 100,000 of them)
                assert plain is not None
                where, kernel, undeclared, hit = plain.location, plain.kernel, plain.undeclared, Outcome.hit
                line = lines.maker(kernel, where, slots)
                for key, sha256, result in loaded:
                    pid = wanted[key]
                    slot = slot_of.get(pid, "")
                    outcome = hits[pid] = known[pid] = hit(pid, slot, kernel, _HIT_NOTE, result, key, where)
                    digests[pid] = sha256
                    if undeclared:  # what its work() read without declaring, when it was computed, is warned again
                        outcome.undeclared_reads = undeclared
                        outcome.line = partition_line(outcome)
                    else:
                        outcome.line = line(pid, slot, key)
            yield from self._take_rest(rest, wanted, out_dir, slot_of, known, lines)

    def _take_rest(self, rows: list[tuple[str, Entry | None, str | None]], wanted: dict[str, str], out_dir: Path,
                   slot_of: dict[str, str], known: dict[str, HasResult], lines: CachedLines) -> Iterator[tuple[str, str | None]]:
        """`_take_entries` for the entries that are not plain hits: with output files to restore,
        fields of their own, or a problem."""
        for key, entry, problem in rows:
            pid = wanted[key]
            if entry is not None and entry.described:
                try:
                    self.store.restore(entry, out_dir)
                except CorruptEntry as exc:
                    entry, problem = None, str(exc)
                except OSError as exc:  # out/ cannot take it (full, read-only): the entry is fine, the run cannot go on
                    raise share_error(exc, "restoring a cached output to") from exc
            if entry is None:
                if problem is not None and UNLOADABLE in problem:
                    self.unloadable[pid] = problem
                    problem = ""
                yield key, problem
                continue
            location, kernel, slot = entry.location, entry.kernel, slot_of.get(pid, "")
            self.digests[pid] = entry.sha256
            names = tuple(entry.outputs) if entry.described else ()
            outcome = Outcome(pid, slot, "cached", note=_HIT_NOTE, result=entry.result, outputs=names, cache="hit", cache_key=key,
                              result_location=location, kernel=kernel, undeclared_reads=entry.undeclared)
            # what its work() read without declaring, when it was computed, is warned again (the generic line says it)
            outcome.line = partition_line(outcome) if entry.undeclared else lines.line(pid, slot, kernel, location, key, names)
            self.hits[pid] = known[pid] = outcome

    def mark(self, outcome: Outcome) -> None:
        """Say in a computed partition's outcome that its cache entry was corrupt (it was found
        and removed before the run), so the record reports it."""
        untrusted = self.untrusted.get(outcome.id)
        if untrusted is not None:
            outcome.cache = "untrusted"
            outcome.add_note(f"its cache entry was not loaded ({untrusted}); computed again")
            outcome.line = partition_line(outcome)
        unloadable = self.unloadable.get(outcome.id)
        if unloadable is not None:
            outcome.add_note(f"its cache entry was not used ({unloadable}); computed again")
            outcome.line = partition_line(outcome)
        why = self.corrupt.get(outcome.id)
        if why is not None:
            outcome.cache = "corrupt"
            outcome.note = f"{outcome.note}; " if outcome.note else ""
            outcome.note += f"its cache entry was corrupt and not used ({why}); computed again"
            outcome.line = partition_line(outcome)

    # -- the audit (--audit F) ------------------------------------------------------------------

    def pick_audits(self, known: dict[str, HasResult], fraction: float, seed: int) -> dict[str, str]:
        """Choose the hits to recompute (`audit_sample`: ``fraction`` of them, at least one, by
        ``seed``) and take them out of ``known``: they run like ``--refresh``ed partitions (their
        cached descendants stay hits). Returns partition -> the digest its worker compares with."""
        chosen = audit_sample(list(self.hits), fraction, seed)
        self.audit = AuditRecord(fraction=fraction, seed=seed, hits=len(self.hits), chosen=len(chosen))
        for pid in chosen:
            self.audits[pid] = self.hits.pop(pid)
            del known[pid]
        return {pid: self.digests[pid] for pid in chosen}

    def audited(self, outcome: Outcome) -> Notice | None:
        """Take in the outcome of an audited hit: count it; a match's result stays in its entry
        (the record says where); a mismatch is kept for the record, with a warning to show now."""
        hit = self.audits.get(outcome.id)
        if hit is None or self.audit is None:
            return None
        if outcome.cache == "audited":
            self.audit.matched += 1
            outcome.result_location = hit.result_location
            outcome.line = partition_line(outcome)
        elif outcome.cache == "mismatch":
            cached = self.digests[outcome.id]
            self.audit.mismatched.append(AuditMismatch(partition=outcome.id, cached=cached, fresh=outcome.digest))
            if len(self.audit.mismatched) > _SHOWN:
                return None  # the record's warning at the end names how many more
            return Notice(f"cache: mismatch on partition {outcome.id}: the recomputed result (sha256 {outcome.digest[:16]}…) "
                          f"differs from the cached one (sha256 {cached[:16]}…): its work() is not "
                          "deterministic, or reads inputs its key cannot see; the fresh result is used and replaced the entry",
                          level="warning")
        else:
            self.audit.unchecked += 1
        return None

    def audit_warning(self) -> str | None:
        """The record's warning when the audit found mismatches (None when it found none)."""
        audit = self.audit
        if audit is None or not audit.mismatched:
            return None
        names = ", ".join(m.partition for m in audit.mismatched[:_SHOWN]) + (
            f" and {len(audit.mismatched) - _SHOWN} more" if len(audit.mismatched) > _SHOWN else "")
        return (f"cache: mismatch: {len(audit.mismatched)} of {audit.chosen} audited cache hits gave another result when "
                f"recomputed ({names}): their work() is not deterministic, or reads inputs the cache key cannot see "
                "(declare them with Partition(inputs=...) or reads=); the fresh results were used and replaced the entries")
