"""A run's plan file is linked from the memo when an earlier run of the app used the same plan
(`agi_core.run.plan_memo`), and written afresh when anything in it differs."""

from __future__ import annotations

import asyncio

from agi_core import AGI
from agi_core.plan import WorkPlan


def run(env, share, **kwargs):
    cluster = {"workers_data_path": str(share), **kwargs.pop("cluster", {})}
    return asyncio.run(AGI.run(env, cluster=cluster, **kwargs))


def test_the_same_plan_links_the_earlier_runs_file_and_another_plan_gets_its_own(toy_env, share):
    first = run(toy_env, share, mode=0, n=6)
    again = run(toy_env, share, mode=0, n=6)
    plan_file = first.run_dir / "plan.json"
    assert (again.run_dir / "plan.json").samefile(plan_file)
    assert WorkPlan.load(again.run_dir / "plan.json").fingerprint == again.plan.fingerprint

    other_args = run(toy_env, share, mode=0, n=7)
    other_slots = run(toy_env, share, mode="p", n=6, cluster={"workers": {"127.0.0.1": 2}})
    for other in (other_args, other_slots):
        written = WorkPlan.load(other.run_dir / "plan.json")
        assert not (other.run_dir / "plan.json").samefile(plan_file)
        assert (written.fingerprint, written.assignment) == (other.plan.fingerprint, other.plan.assignment)


def test_without_the_cache_the_plan_file_is_written_and_no_memo_is_kept(toy_env, share):
    first = run(toy_env, share, mode=0, n=6, use_cache=False)
    again = run(toy_env, share, mode=0, n=6, use_cache=False)
    assert not (again.run_dir / "plan.json").samefile(first.run_dir / "plan.json")
    assert not (share / "cache").exists()
