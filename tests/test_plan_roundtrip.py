"""Plans round-trip exactly through their file, and an edit of what the fingerprint covers is named.

Random plans (int and float weights, unicode ids, nested payloads with huge ints, tuples and
unicode, DAG deps, needs, reads, prefers, inputs) go through `build_plan` → `to_json` →
`from_json`; values a plan file cannot carry are refused when the plan is made, naming the
partition. The end-to-end side (`agi distrib --out` then `agi run --plan`, `--resume`, the report)
is in tests/test_plan_files.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi_core import Partition, PlanError, WorkPlan
from agi_core.plan import Slot, build_plan
from agi_core.plan.workplan import fingerprint_of

SLOTS = [Slot("h-0", "h"), Slot("h-1", "h", 2.0), Slot("gé-0", "gé", 1.0, ("gpu",))]
FIELDS = ("weight", "payload", "deps", "needs", "reads", "prefers", "inputs")

texts = st.text(max_size=8)  # unicode, without lone surrogates (they are refused: see below)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**200)
           | st.floats(allow_nan=False, allow_infinity=False) | texts)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
weights = st.integers(min_value=0, max_value=10**6) | st.floats(min_value=0, max_value=1e6, allow_nan=False)
args_strategy = st.dictionaries(st.sampled_from(["n", "größe", "path", "opts"]), json_values, max_size=4)


@st.composite
def plans(draw: st.DrawFn) -> tuple[dict, list[Partition]]:
    """Args and partitions: unique unicode ids, each depending only on earlier ones (a DAG)."""
    args = draw(args_strategy)
    ids = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=12, unique=True))
    parts = []
    for k, pid in enumerate(ids):
        deps = draw(st.lists(st.sampled_from(ids[:k]), max_size=3, unique=True)) if k else []
        parts.append(Partition(
            pid, draw(weights), draw(json_values), tuple(deps),
            needs=("gpu",) if draw(st.booleans()) and k % 3 == 0 else (),
            reads=draw(st.none() | st.lists(st.sampled_from(sorted(args) or ["n"]), max_size=2, unique=True).map(tuple)),
            prefers=("gpu",) if draw(st.booleans()) else (),
            inputs=tuple(draw(st.lists(texts.filter(bool), max_size=2))),
        ))
    return args, parts


def as_json(value):
    """``value`` as a plan file gives it back: tuples become lists."""
    return json.loads(json.dumps(value))


@settings(max_examples=150, deadline=None)
@given(plans())
def test_a_plan_read_back_from_its_file_is_the_same_plan(drawn):
    args, parts = drawn
    plan = build_plan("démo", args, parts, SLOTS)
    text = plan.to_json()
    back = WorkPlan.from_json(text, origin="plan.json")  # checks the fingerprint against the partitions read
    assert back.fingerprint == plan.fingerprint == fingerprint_of(back.app, back.args, back.partitions)
    assert back.assignment == plan.assignment and back.slots == plan.slots and back.app == "démo"
    assert back.args == as_json(args)
    assert back.partitions == [replace(p, payload=as_json(p.payload)) for p in parts]
    for read, made in zip(back.partitions, parts):
        assert type(read.weight) is float and read.weight == made.weight  # an int weight stays the same number
    assert back.to_json() == text  # and it writes the same file again
    back.check_current(plan, origin="plan.json")  # a fresh plan made from the same partitions: not stale


@settings(max_examples=100, deadline=None)
@given(plans(), st.data())
def test_an_edit_of_a_partition_is_named_with_its_field_and_both_values(drawn, data):
    args, parts = drawn
    plan = build_plan("démo", args, parts, SLOTS)
    victim = data.draw(st.sampled_from(plan.partitions))
    field = data.draw(st.sampled_from(["weight", "payload", "inputs"]))
    file = json.loads(plan.to_json())
    entry = next(p for p in file["partitions"] if p["id"] == victim.id)
    if field == "weight":
        entry["weight"] = victim.weight + 1.5
    elif field == "payload":
        entry["payload"] = {"edited": [entry["payload"]]}
    else:
        entry["inputs"] = [*victim.inputs, "édité.csv"]
    with pytest.raises(PlanError) as info:
        WorkPlan.from_json(json.dumps(file), origin="plan.json", current=plan)
    message = str(info.value)
    assert "plan.json" in message and "the partitions or args were edited" in message
    assert f"partition '{victim.id}' {field} was " in message and "in the file" in message


@settings(max_examples=60, deadline=None)
@given(plans(), st.data())
def test_an_edited_arg_is_named_with_both_values(drawn, data):
    args, parts = drawn
    plan = build_plan("démo", {**args, "n": 6}, parts, SLOTS)
    file = json.loads(plan.to_json())
    file["args"]["n"] = 7
    with pytest.raises(PlanError) as info:
        WorkPlan.from_json(json.dumps(file), origin="plan.json", current=plan)
    assert "args.n was 6, is 7 in the file" in str(info.value)


@settings(max_examples=100, deadline=None)
@given(plans(), st.data(), st.sampled_from([math.nan, math.inf, -math.inf, {1: "one"}, {None: 0}, {(1, 2): 0}, "\ud800", object()]))
def test_a_value_a_plan_file_cannot_carry_is_refused_naming_the_partition(drawn, data, bad):
    args, parts = drawn
    k = data.draw(st.integers(0, len(parts) - 1))
    parts[k] = replace(parts[k], payload={"ok": 1, "deep": [parts[k].payload, bad]})
    with pytest.raises(PlanError) as info:
        build_plan("démo", args, parts, SLOTS)
    assert f"partition '{parts[k].id}' cannot be written to a plan file" in str(info.value)  # drawn payloads are all fine
    assert "dicts (with string keys)" in info.value.fix


def test_an_edited_plan_without_todays_plan_says_how_to_see_what_differs():
    plan = build_plan("démo", {"n": 2}, [Partition("a", 2), Partition("b", 1)], SLOTS)
    file = json.loads(plan.to_json())
    file["partitions"][0]["weight"] = 5
    with pytest.raises(PlanError) as info:
        WorkPlan.from_json(json.dumps(file), origin="plan.json")
    assert "fingerprint no longer matches" in str(info.value) and "agi run APP --plan FILE" in str(info.value)


def test_reordered_partitions_are_named_as_a_new_order():
    plan = build_plan("démo", {}, [Partition("a", 2), Partition("b", 1)], SLOTS)
    file = json.loads(plan.to_json())
    file["partitions"].reverse()
    with pytest.raises(PlanError, match=r"the partitions are in another order \(at position 0: 'a' → 'b'\)"):
        WorkPlan.from_json(json.dumps(file), origin="plan.json", current=plan)


def test_a_nan_written_into_a_plan_file_by_hand_is_refused_naming_the_partition():
    plan = build_plan("démo", {}, [Partition("a", 2, {"x": 1.0}), Partition("b", 1)], SLOTS)
    text = plan.to_json().replace('{"x":1.0}', '{"x":NaN}')
    with pytest.raises(PlanError, match=r"plan.json: partition 'a' has a payload that is not JSON data: nan"):
        WorkPlan.from_json(text, origin="plan.json", current=plan)


def test_a_stale_plan_names_the_partition_field_and_values():
    old = build_plan("démo", {"n": 2}, [Partition("a", 2, {"i": 0}), Partition("b", 1, deps=("a",))], SLOTS)
    new = build_plan("démo", {"n": 2}, [Partition("a", 3, {"i": 0}), Partition("b", 1)], SLOTS)
    with pytest.raises(PlanError) as info:
        old.check_current(new, origin="plan.json")
    message = str(info.value)
    assert "stale work plan" in message and "partition 'a' weight was 2.0, is now 3.0" in message
    assert "partition 'b' deps was ['a'], is now []" in message
