"""The result cache, seen from one run: keys for its plan, the entries it can reuse, and what the
record says about each partition (``hit``, ``miss``, ``stored``, ``corrupt``).

Before anything runs, every partition gets its key (`agi_core.cache.plan_keys`), the keys are
written to ``<run>/cache_keys.json`` (what `agi runs show --why` compares, and what `agi cache gc`
keeps while the run runs), and every entry found is loaded and checked. Loaded results are known
to the graph driver from the start; only the rest is handed to an executor, whose workers store
what they compute straight into the cache.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_bytes_atomic
from ..cache import CacheStore, CorruptEntry, RunKeys, kernel_kind_for_mode, plan_keys
from ..cache.keys import KEYS_FILE
from ..errors import PlanError
from ..events import EventSink, Notice
from ..executors import Outcome
from ..plan import Known
from ..provenance.lines import cached_line, partition_line

if TYPE_CHECKING:
    from ..env import AgiEnv
    from ..plan import WorkPlan
    from .request import RunRequest

__all__ = ["RunCache"]

_HIT_NOTE = "result from the cache"


@dataclass
class RunCache:
    """The cache of one run: its store, the plan's keys, what was found, and what to refresh."""

    store: CacheStore
    keys: RunKeys
    refresh: frozenset[str] = frozenset()
    hits: dict[str, Outcome] = field(default_factory=dict)  # found and checked, with their results
    corrupt: dict[str, str] = field(default_factory=dict)  # partition -> why its entry was not used

    @classmethod
    def open(cls, env: AgiEnv, request: RunRequest, plan: WorkPlan, *, kernel: str | None = None) -> RunCache:
        """Key the plan. ``kernel``: the kernel kind the partitions will run (known for local
        runs); by default the one the mode asks for (on a cluster, each worker picks its own)."""
        keys = plan_keys(plan.partitions, code=env.code_hash(), args=request.args,
                         kernel=kernel or kernel_kind_for_mode(request.mode))
        unknown = sorted(set(request.refresh) - set(keys.keys))
        if unknown:
            raise PlanError(f"--refresh names partition(s) {', '.join(unknown[:5])} that the plan does not have",
                            fix="see the partition ids with `agi distrib APP`")
        return cls(CacheStore.for_app(request.share, env.name), keys, frozenset(request.refresh))

    def write_keys(self, run_dir: Path) -> None:
        """Keep the keys beside the run's record (for `agi runs show --why` and `agi cache gc`)."""
        write_bytes_atomic(run_dir / KEYS_FILE, self.keys.to_json())

    def load(self, plan: WorkPlan, out_dir: Path, emit: EventSink) -> dict[str, Known]:
        """Load every usable entry of the plan's keys, restoring their output files into
        ``out_dir``; a corrupt entry is removed (the partition is computed again) and reported."""
        enabled = gc.isenabled()
        gc.disable()  # every object made here lives on: collections would only walk them again (0.3 s per 100,000 hits)
        try:
            return self._load(plan, out_dir, emit)
        finally:
            if enabled:
                gc.enable()

    def _load(self, plan: WorkPlan, out_dir: Path, emit: EventSink) -> dict[str, Known]:
        slot_of = plan.slot_of()
        wanted = {key: pid for pid, key in self.keys.keys.items() if pid not in self.refresh}
        known: dict[str, Known] = {}
        view = self.store.view(wanted)  # every index read once; then each pack once, not a file per key
        bad: list[str] = []
        for key, entry, problem in self.store.load_many(view, view.keys()):
            pid = wanted[key]
            outputs = entry.header.get("outputs") if entry is not None else None
            if entry is not None and outputs:
                try:
                    self.store.restore(entry, out_dir)
                except CorruptEntry as exc:
                    entry, problem = None, str(exc)
            if entry is None:
                if problem is not None:  # None: removed since we looked (gc, clear): computed again
                    self.corrupt[pid] = problem
                    bad.append(key)
                continue
            known[pid] = Known(entry.result, source=entry.location)
            slot, kernel = slot_of.get(pid, ""), str(entry.header.get("kernel", ""))
            names = tuple(entry.outputs) if outputs else ()
            outcome = Outcome(pid, slot, "cached", note=_HIT_NOTE, result=entry.result, outputs=names, cache="hit", key=key,
                              location=entry.location, kernel=kernel)
            outcome.line = cached_line(pid, slot, kernel, entry.location, key, _HIT_NOTE, names)
            self.hits[pid] = outcome
        if bad:
            self.store.discard_many(bad)
        for problem in view.problems[:3]:
            emit(Notice(f"a cache index was not used: {problem}"))
        if self.corrupt:
            emit(Notice(f"{len(self.corrupt)} cache entr{'y was' if len(self.corrupt) == 1 else 'ies were'} corrupt and will be "
                        f"recomputed: {next(iter(self.corrupt.values()))}"))
        return known

    def mark(self, outcome: Outcome) -> None:
        """Say in a computed partition's outcome that its cache entry was corrupt (it was found
        and removed before the run), so the record reports it."""
        why = self.corrupt.get(outcome.id)
        if why is not None:
            outcome.cache = "corrupt"
            outcome.note = f"{outcome.note}; " if outcome.note else ""
            outcome.note += f"its cache entry was corrupt and not used ({why}); computed again"
            outcome.line = partition_line(outcome)
