"""What a run says about itself once its partitions are done: files they wrote or read
without declaring them, kernel fallbacks, and the words of its failure (`run.ending` records
and shows them)."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from pathlib import Path

from ..base.errors import ShareError
from ..base.share_io import is_file_error, share_error
from ..executors import NOTE_SEPARATOR, Outcome

__all__ = ["failure_message", "failure_text", "kernel_notes", "stray_outputs", "undeclared_reads"]


def stray_outputs(out_dir: Path, outcomes: Iterable[Outcome]) -> str | None:
    """Files partitions left in ``out_dir`` without declaring them (``ctx.output``) are neither
    recorded nor cached: a cache hit could not bring them back. The warning, or None."""
    declared = {name for outcome in outcomes for name in outcome.outputs}
    stray = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()
                   and p.relative_to(out_dir).as_posix() not in declared)
    if not stray:
        return None
    shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
    return (f"partitions wrote {shown} into out/ without ctx.output(): those files are not cached, "
            "and a re-run that takes their partitions from the cache will not have them; name them with ctx.output(name)")


def undeclared_reads(outcomes: Iterable[Outcome], run_id: str) -> str | None:
    """One warning naming the files partitions read without declaring them, or None."""
    readers = [o for o in outcomes if o.undeclared_reads]
    if not readers:
        return None
    paths = list(dict.fromkeys(path for o in readers for path in o.undeclared_reads if not path.startswith("… and")))
    shown = ", ".join(paths[:3]) + (" …" if len(paths) > 3 else "")
    cached = sum(o.status == "cached" for o in readers)
    served = f", {cached} of them taken from the cache, which would not have seen those files change" if cached else ""
    return (f"{len(readers)} partition{'s' if len(readers) > 1 else ''} read files not in their inputs ({shown}){served}: "
            "the cache will not see changes to them; declare them with Partition(inputs=...) "
            f"(agi runs show {run_id} --all lists them per partition)")


def failure_message(outcomes: Iterable[Outcome]) -> str | None:
    """The first failed partition, its slot and error, and how many others failed, were skipped
    and succeeded; None when no partition failed."""
    outcomes = list(outcomes)
    bad = [o for o in outcomes if o.status == "failed"]
    if not bad:
        return None
    first = bad[0]
    others = f" ({len(bad) - 1} more failed)" if len(bad) > 1 else ""
    skipped = sum(o.status == "skipped" for o in outcomes)
    return (f"partition '{first.id}' failed on slot {first.slot}{others}"
            + (f"; {skipped} skipped for failed dependencies" if skipped else "")
            + f"; {sum(o.ok for o in outcomes)} succeeded\n{(first.error or '').rstrip()}")


def failure_text(exc: BaseException) -> str:
    """What the record says of a run that raised ``exc``: a share error's message (the path and
    the errno say it all), else the traceback."""
    if is_file_error(exc):
        return share_error(exc, "during the run, at").message
    if isinstance(exc, ShareError):
        return exc.message
    return traceback.format_exc()


def kernel_notes(outcomes: Iterable[Outcome], shown: int = 5) -> str | None:
    """On a cluster each worker picks its kernels and notes a fallback on its partitions ("no GPU
    on h2: ran the CPU kernels"); the run's summary names each distinct one once, as a local
    run's does. Cache notes ("not cached: ...", "result from the cache") are not about kernels."""
    distinct = dict.fromkeys(o.note for o in outcomes if o.note)  # 100,000 hits share one note: split it once
    notes = dict.fromkeys(part for note in distinct for part in note.split(NOTE_SEPARATOR)
                          if not part.startswith(("not cached", "result from the cache", "cache audit", "the recomputed result")))
    text = NOTE_SEPARATOR.join(list(notes)[:shown]) + (f"; and {len(notes) - shown} more" if len(notes) > shown else "")
    return text or None
