"""A run's cache before anything runs: opened (or, without it, the declared inputs checked), the
results it already has loaded, and the hits chosen for an audit.

Separate from `runner` (which calls it between the first record and the executor) and from
`caching` (`RunCache` itself): this is the order of those steps and what the record and the
listeners hear of them. A ``--no-cache`` run never imports the cache package from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..base.events import EventSink, Notice, Phase
from ..plan import HasResult
from ..provenance import RecordWriter, RunRecord

if TYPE_CHECKING:
    from ..app.env import AgiEnv
    from ..plan import WorkPlan
    from .caching import RunCache
    from .request import RunRequest

__all__ = ["look_up", "open_cache"]


def open_cache(env: AgiEnv, request: RunRequest, plan: WorkPlan, kernel: str | None) -> RunCache | None:
    """The run's cache (None with ``--no-cache``). A bad `reads`, ``--refresh`` id or input fails
    here, before the run folder exists; without the cache, the declared inputs are still checked."""
    if request.use_cache:
        from .caching import RunCache  # imported when used: a --no-cache run starts without the cache package

        return RunCache.open(env, request, plan, kernel=kernel)
    if any(p.inputs for p in plan.partitions):
        from ..cache.inputs import check_inputs

        check_inputs(((p.id, p.inputs) for p in plan.partitions if p.inputs), request.share)
    return None


def look_up(cache: RunCache, plan: WorkPlan, run_dir: Path, fraction: float, record: RunRecord, writer: RecordWriter,
            emit: EventSink) -> tuple[dict[str, HasResult], dict[str, str]]:
    """The results found in the cache (outputs restored into ``run_dir/out``), and the hits chosen
    for the audit of ``fraction`` of them (partition -> the digest its worker compares with), which
    are computed again. The cache's warnings and the audit go into ``record``."""
    emit(Phase("cache", f"looking up {len(plan.partitions)} partitions in {cache.store.root}"))
    known = cache.load(plan, run_dir / "out", emit)
    if cache.warnings:  # e.g. untrusted entries: said once, and kept in the record
        record.warnings.extend(cache.warnings)
    if not fraction:
        return known, {}
    from ..cache.audit import new_seed

    audit = cache.pick_audits(known, fraction, new_seed())
    assert cache.audit is not None
    record.audit = cache.audit
    writer.write(record)
    if audit:
        emit(Notice(f"cache audit: recomputing {len(audit)} of {cache.audit.hits} cache hits "
                    f"(--audit {fraction:g}, seed {cache.audit.seed}) to compare them with their entries"))
    return known, audit
