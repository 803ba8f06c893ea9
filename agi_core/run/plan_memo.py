"""The plan file of a run whose plan an earlier run of the app used already: a hard link to that
run's ``plan.json``, not 100,000 partitions encoded again (0.15 s of an unchanged re-run).

Beside the keys memo (`cache.keys_memo`), in the app's cache folder, named by what the file holds
(`WorkPlan.file_digest`: fingerprint, slots, assignment): ``<share>/cache/<app>/plans/<digest>.json``
is a hard link to the plan file of the last run of that plan. Nothing writes a plan file in place
(`base.atomic` renames), so a link never changes under a run that has it. Runs without the cache
write their plan file as before; a share without hard links only loses the shortcut.

>>> import tempfile
>>> from agi_core.plan import build_plan, Slot
>>> from agi_core.app import Partition
>>> plan = build_plan("demo", {}, [Partition("a"), Partition("b")], [Slot("s0", "localhost")])
>>> root, runs = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
>>> save_plan(plan, runs / "one.json", root), save_plan(plan, runs / "two.json", root)
(False, True)
>>> (runs / "one.json").samefile(runs / "two.json")
True
"""

from __future__ import annotations

import os
from pathlib import Path

from ..base.atomic import replacing
from ..plan import WorkPlan

__all__ = ["PLANS_DIR", "save_plan"]

#: the folder of plan memos in an app's cache folder
PLANS_DIR = "plans"


def save_plan(plan: WorkPlan, target: Path, cache_root: Path | None) -> bool:
    """Write ``plan`` as ``target``, or link the same plan's file from the memo in ``cache_root``
    (None: no cache, no memo). Returns whether it was linked."""
    if cache_root is None:
        plan.save(target)
        return False
    memo = Path(cache_root) / PLANS_DIR / f"{plan.file_digest()}.json"
    try:
        os.link(memo, target)
    except OSError:
        pass  # no memo of this plan yet (or no hard links on this share): write it, and keep it
    else:
        try:
            os.utime(memo)  # its last use, for `prune_memos` (the links share it)
        except OSError:
            pass
        return True
    plan.save(target)
    from ..cache.keys_memo import KEEP, prune_memos  # a run with the cache has loaded the package already

    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        with replacing(memo) as tmp:
            os.link(target, tmp)
        prune_memos(memo.parent, KEEP)
    except OSError:
        pass  # best effort: the next run writes its plan file again
    return False
