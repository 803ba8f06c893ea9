import json

import pytest

from agi_core import Partition, PlanError, WorkPlan
from agi_core.plan import Slot, build_plan

SLOTS = [Slot("h-0", "h"), Slot("h-1", "h"), Slot("g-0", "g", 1.0, ("gpu",))]


def make_plan(**args):
    parts = [Partition(f"p{i}", float(i + 1), {"i": i}, deps=(f"p{i-1}",) if i == 3 else (), needs=("gpu",) if i == 4 else ())
             for i in range(6)]
    return build_plan("toy", {"n": 6, **args}, parts, SLOTS)


def edited(plan, mutate):
    data = json.loads(plan.to_json())
    mutate(data)
    return json.dumps(data)


def test_round_trip_keeps_everything(tmp_path):
    plan = make_plan()
    path = tmp_path / "plan.json"
    plan.save(path)
    again = WorkPlan.load(path)
    assert again == plan
    assert json.loads(path.read_text())["schema"] == "agi.workplan.v1"


def test_gpu_partition_lands_on_the_gpu_slot():
    assert "p4" in make_plan().assignment["g-0"]


def test_moving_a_partition_is_a_valid_edit():
    plan = make_plan()
    pid = plan.assignment["h-0"][0]
    text = edited(plan, lambda d: (d["assignment"]["h-0"].remove(pid), d["assignment"]["h-1"].append(pid)))
    again = WorkPlan.from_json(text)
    assert again.slot_of()[pid] == "h-1"
    again.check_current(make_plan())  # same fingerprint, slots exist


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["assignment"]["h-0"].pop(), "is not assigned to any slot"),
    (lambda d: d["assignment"]["h-1"].append(d["assignment"]["h-0"][0]), "is assigned 2 times"),
    (lambda d: d["assignment"].setdefault("zz-9", []).append("p0"), "slot 'zz-9'"),
    (lambda d: d["assignment"]["h-0"].append("p99"), "partition 'p99' is assigned but not defined"),
    (lambda d: d["partitions"][0].update(weight=99.0), "fingerprint no longer matches"),
    (lambda d: (d["assignment"]["g-0"].remove("p4"), d["assignment"]["h-0"].append("p4")), "needs gpu but slot 'h-0'"),
    (lambda d: d.update(schema="other"), "not a work plan"),
    (lambda d: d.pop("partitions"), "malformed work plan"),
])
def test_invalid_edits_name_the_partition_or_slot(mutate, expected):
    with pytest.raises(PlanError) as info:
        WorkPlan.from_json(edited(make_plan(), mutate), origin="plan.json")
    assert expected in str(info.value) and "plan.json" in str(info.value)
    assert info.value.fix


def test_not_json_is_a_clear_error():
    with pytest.raises(PlanError, match="not valid JSON"):
        WorkPlan.from_json("{oops", origin="plan.json")


def test_dependency_cycle_is_rejected():
    parts = [Partition("a", deps=("b",)), Partition("b", deps=("a",))]
    with pytest.raises(PlanError, match="partitions a → b → a form a dependency cycle"):
        build_plan("toy", {}, parts, SLOTS[:1])


def test_edited_deps_are_checked_with_the_assignment():
    # An unknown dependency and a missing assignment are both reported, with the generic fix.
    text = edited(make_plan(), lambda d: (d["partitions"][3].update(deps=["nope"]), d["assignment"]["h-0"].pop()))
    with pytest.raises(PlanError) as info:
        WorkPlan.from_json(text, origin="plan.json")
    assert "partition 'p3' depends on unknown partition 'nope'" in str(info.value)
    assert "is not assigned to any slot" in str(info.value) and "edit only the assignment" in info.value.fix


def test_stale_plan_names_what_changed():
    old, new = make_plan(), make_plan(n=7)
    with pytest.raises(PlanError) as info:
        old.check_current(new, origin="plan.json")
    assert "stale work plan" in str(info.value) and "args.n was 6, is now 7" in str(info.value)


def test_plan_using_a_slot_this_run_lacks_is_rejected():
    plan = make_plan()
    fewer = build_plan("toy", plan.args, plan.partitions, [Slot("g-0", "g", 1.0, ("gpu",))])
    with pytest.raises(PlanError, match="which this run does not have"):
        plan.check_current(fewer)


def test_tree_shows_slots_and_loads():
    from rich.console import Console

    from agi_core.cli.plan_view import plan_tree

    console = Console(record=True, width=120)
    console.print(plan_tree(make_plan()))
    text = console.export_text()
    assert "6 partitions on 3 slots" in text and "g-0" in text and "p4" in text
