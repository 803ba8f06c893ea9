import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi_core import Partition, PlanError
from agi_core.plan import Slot, balance, makespan


def lower_bound(weights, slots):
    total_capacity = sum(s.capacity for s in slots)
    return max(max(weights) / max(s.capacity for s in slots), sum(weights) / total_capacity)


def optimum(weights, n_slots):
    """The best makespan over every assignment of ``weights`` to ``n_slots`` equal slots."""
    best = float("inf")
    for choice in itertools.product(range(n_slots), repeat=len(weights)):
        loads = [0.0] * n_slots
        for weight, slot in zip(weights, choice):
            loads[slot] += weight
        best = min(best, max(loads))
    return best


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
       n_slots=st.integers(min_value=1, max_value=12))
def test_every_partition_exactly_once_and_list_scheduling_bound(weights, n_slots):
    parts = [Partition(f"p{i}", w) for i, w in enumerate(weights)]
    slots = [Slot(f"h-{k}", "h") for k in range(n_slots)]
    plan = balance(parts, slots)
    placed = [pid for ids in plan.values() for pid in ids]
    assert sorted(placed) == sorted(p.id for p in parts)
    assert set(plan) == {s.name for s in slots}
    # Greedy list scheduling never exceeds total/m + max; LPT is within (4/3 - 1/3m) of the
    # optimum, which small cases find by trying every assignment.
    span = makespan(plan, {p.id: p.weight for p in parts}, slots)
    assert span <= sum(weights) / n_slots + max(weights) + 1e-6
    if n_slots ** len(weights) <= 20_000:
        assert span <= (4 / 3 - 1 / (3 * n_slots)) * optimum(weights, n_slots) * (1 + 1e-9) + 1e-6


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_needs_are_honoured(data):
    n = data.draw(st.integers(1, 60))
    gpu_parts = data.draw(st.sets(st.integers(0, n - 1)))
    parts = [Partition(f"p{i}", float(i % 7 + 1), needs=("gpu",) if i in gpu_parts else ()) for i in range(n)]
    slots = [Slot("cpu-0", "cpu"), Slot("cpu-1", "cpu"), Slot("gpu-0", "gpu", 2.0, ("gpu",))]
    plan = balance(parts, slots)
    for pid in plan["cpu-0"] + plan["cpu-1"]:
        assert int(pid[1:]) not in gpu_parts


def test_capacity_gets_proportional_load():
    parts = [Partition(f"p{i}", 1.0) for i in range(300)]
    slots = [Slot("fast-0", "fast", 2.0), Slot("slow-0", "slow", 1.0)]
    plan = balance(parts, slots)
    assert len(plan["fast-0"]) == 200 and len(plan["slow-0"]) == 100


def test_lognormal_100k_is_near_the_lower_bound():
    rng = random.Random(7)
    weights = [rng.lognormvariate(0, 1) for _ in range(100_000)]
    parts = [Partition(f"p{i}", w) for i, w in enumerate(weights)]
    slots = [Slot(f"h-{k}", "h") for k in range(16)]
    plan = balance(parts, slots)
    assert makespan(plan, {p.id: p.weight for p in parts}, slots) <= 1.05 * lower_bound(weights, slots)


def test_unmet_need_names_the_partition():
    with pytest.raises(PlanError) as info:
        balance([Partition("a"), Partition("b", needs=("gpu",))], [Slot("h-0", "h")])
    assert "partition 'b' needs gpu" in str(info.value)
    assert "capabilities" in info.value.fix


def test_no_slots_is_an_error():
    with pytest.raises(PlanError, match="no slots"):
        balance([Partition("a")], [])


def test_deterministic():
    parts = [Partition(f"p{i}", float(i % 5)) for i in range(50)]
    slots = [Slot(f"h-{k}", "h") for k in range(4)]
    assert balance(parts, slots) == balance(parts, slots)


def test_one_slot_too_few_pairs_the_two_lightest():
    """7 partitions on 6 slots: the best plan pairs the two lightest (a case an earlier,
    too tight, bound in the property test rejected)."""
    weights = [108527.0, 108527.0] + [116871.0] * 5
    parts = [Partition(f"p{i}", w) for i, w in enumerate(weights)]
    slots = [Slot(f"h-{k}", "h") for k in range(6)]
    assert makespan(balance(parts, slots), {p.id: p.weight for p in parts}, slots) == 2 * 108527.0


@settings(max_examples=150, deadline=None)
@given(weights=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 7.25]) | st.floats(min_value=0, max_value=1e3, allow_nan=False),
                        max_size=150),
       n_slots=st.integers(min_value=1, max_value=8), capacity=st.sampled_from([1.0, 2.0, 3.5]))
def test_alike_slots_take_the_same_placement_as_the_general_path(weights, n_slots, capacity):
    """Slots that are all alike take a shorter path (`_balance_alike`); it must place every
    partition where the general one does, ties in weight and load included. A speed-up for a
    capability no partition prefers sends the same plan down the general path."""
    parts = [Partition(f"p{i}", w) for i, w in enumerate(weights)]
    slots = [Slot(f"h-{k}", "h", capacity=capacity) for k in range(n_slots)]
    assert balance(parts, slots) == balance(parts, slots, speeds={"unused": 2.0})
