"""How a run says that ``work()`` ran again after a lost worker: one phrase for the CLI's summary
line, the record's warning and `agi runs show`, so a user searching for it finds all three.

A partition re-run is one whose ``retries`` (`PartitionRecord`) is above 0: it had started on a
worker that was lost, and Dask ran its task again elsewhere (`agi_core.executors.attempts`).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SHOWN", "reruns_phrase", "reruns_warning"]

SHOWN = 5  # partition ids the warning names


def reruns_phrase(count: int) -> str:
    """The count, in words.

    >>> reruns_phrase(1), reruns_phrase(3)
    ('1 partition re-run after a lost worker', '3 partitions re-run after a lost worker')
    """
    return f"{count} partition{'' if count == 1 else 's'} re-run after a lost worker"


def reruns_warning(ids: Sequence[str], run_id: str) -> str:
    """The record's warning for the partitions ``ids`` that ran again, with what to do about it.

    >>> print(reruns_warning(["p1"], "R1"))
    1 partition re-run after a lost worker (p1): its work() ran more than once; write outputs through ctx.output(name) and make other side effects idempotent (agi runs show R1 --all lists them)
    """
    shown = ", ".join(ids[:SHOWN]) + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")
    return (f"{reruns_phrase(len(ids))} ({shown}): {'its' if len(ids) == 1 else 'their'} work() ran more than once; "
            f"write outputs through ctx.output(name) and make other side effects idempotent "
            f"(agi runs show {run_id} --all lists them)")
