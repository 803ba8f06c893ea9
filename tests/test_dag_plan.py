"""DAG work plans: validation that names the problem, critical path first, inputs kept together,
and the plan drawn as a graph (`agi distrib --graph`)."""

import json
import random
import sys

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi_core import AgiError, Partition, PlanError, WorkPlan
from agi_core.plan import Slot, balance, bottom_levels, build_plan, check_dependencies, topological_order
from agi_core.plan import dag as dag_module
from agi_core.plan.drawing import draw_plan
from tests.conftest import TEST_APPS, run_agi

PNG = b"\x89PNG\r\n\x1a\n"
TWO = [Slot("s-0", "s"), Slot("s-1", "s")]


def wide_dag(n, width, seed=5):
    rng = random.Random(seed)
    parts = []
    for i in range(n):
        layer = i // width
        deps = tuple(dict.fromkeys(f"p{(layer - 1) * width + rng.randrange(width)}" for _ in range(3))) if layer else ()
        parts.append(Partition(f"p{i}", rng.lognormvariate(0, 1), deps=deps))
    return parts


# -- validation ---------------------------------------------------------------------------------


def test_cycle_error_names_the_cycle_in_order():
    parts = [Partition("x"), Partition("a", deps=("x", "c")), Partition("b", deps=("a",)), Partition("c", deps=("b",)),
             Partition("d", deps=("c",))]
    with pytest.raises(PlanError) as info:
        build_plan("toy", {}, parts, TWO)
    message = str(info.value)
    assert "partitions a → b → c → a form a dependency cycle" in message
    assert "the plan of app 'toy'" in message
    assert "'x'" not in message and " d " not in message  # only the cycle, not what hangs off it
    assert "remove one of these dependencies" in info.value.fix


def test_self_dependency_is_a_cycle_of_one():
    with pytest.raises(PlanError, match="partitions a → a form a dependency cycle"):
        check_dependencies([Partition("a", deps=("a",))])


def test_cycle_in_an_edited_plan_file_is_named(tmp_path):
    plan = build_plan("toy", {}, [Partition("a"), Partition("b", deps=("a",))], TWO)
    data = json.loads(plan.to_json())
    data["partitions"][0]["deps"] = ["b"]
    with pytest.raises(PlanError) as info:
        WorkPlan.from_json(json.dumps(data), origin="plan.json")
    assert "plan.json" in str(info.value) and "partitions a → b → a form a dependency cycle" in str(info.value)


def test_unknown_dependency_names_the_partition_and_the_missing_id():
    with pytest.raises(PlanError) as info:
        build_plan("toy", {}, [Partition("a"), Partition("b", deps=("a", "zz"))], TWO)
    assert "partition 'b' depends on unknown partition 'zz'" in str(info.value)
    assert "deps" in info.value.fix


def test_duplicate_id_is_named():
    for parts in ([Partition("a"), Partition("b"), Partition("a")],  # without deps: the plan check finds it
                  [Partition("a"), Partition("b", deps=("a",)), Partition("a")]):  # with deps: the graph check
        with pytest.raises(PlanError) as info:
            build_plan("toy", {}, parts, TWO)
        assert "partition 'a' is defined 2 times" in str(info.value)


def test_every_problem_is_listed_at_once():
    problems = dag_module.dependency_problems([Partition("a"), Partition("a"), Partition("b", deps=("y", "z"))])
    assert [p.message for p in problems] == ["partition 'a' is defined 2 times", "partition 'b' depends on unknown partition 'y'",
                                             "partition 'b' depends on unknown partition 'z'"]


def test_topological_order_keeps_its_shape():
    order, stuck = topological_order([Partition("c", deps=("b",)), Partition("b", deps=("a",)), Partition("a"), Partition("z")])
    assert sorted(order) == ["a", "b", "c", "z"] and order.index("a") < order.index("b") < order.index("c") and stuck == []
    order, stuck = topological_order([Partition("a", deps=("b",)), Partition("b", deps=("a",)), Partition("c", deps=("a",)),
                                      Partition("d")])
    assert order == ["d"] and stuck == ["a", "b", "c"]


# -- critical path first ------------------------------------------------------------------------


def test_critical_path_is_placed_and_run_first():
    # `a` is light, but `b` and `c` wait for it: by bottom level it goes before the heavy ones.
    parts = [Partition("heavy1", 5), Partition("heavy2", 5), Partition("a", 1), Partition("b", 3, deps=("a",)),
             Partition("c", 3, deps=("b",))]
    assert bottom_levels(parts) == {"heavy1": 5, "heavy2": 5, "a": 7, "b": 6, "c": 3}
    plan = balance(parts, TWO)
    assert plan == {"s-0": ["a", "heavy1", "c"], "s-1": ["b", "heavy2"]}
    # Without deps the same weights go heaviest first, and `a` last.
    assert balance([Partition(p.id, p.weight) for p in parts], TWO)["s-0"][-1] == "a"


def test_slot_order_is_by_bottom_level_even_after_needs_first():
    slots = [Slot("g-0", "g", 1.0, ("gpu",))]
    parts = [Partition("g1", 1, needs=("gpu",)), Partition("a", 1), Partition("b", 5, deps=("a",))]
    assert balance(parts, slots) == {"g-0": ["a", "b", "g1"]}


def test_zero_weights_still_put_inputs_first():
    parts = [Partition("c", 0, deps=("b",)), Partition("b", 0, deps=("a",)), Partition("a", 0)]
    assert balance(parts, [Slot("s-0", "s")]) == {"s-0": ["a", "b", "c"]}


# -- placement: balance first, then the slot of the largest input --------------------------------


def test_on_a_tie_a_partition_joins_its_input():
    # n1 -> s-0, n2 -> s-1 (loads 2, 2). d could finish at 3 on either: it goes where n2 is,
    # although plain LPT would take s-0 (first of equal loads). Then e joins n1.
    parts = [Partition("n1", 2), Partition("n2", 2), Partition("d", 1, deps=("n2",)), Partition("e", 1, deps=("n1",))]
    assert balance(parts, TWO) == {"s-0": ["n1", "e"], "s-1": ["n2", "d"]}


def test_the_largest_input_wins_among_inputs():
    # y (small) lands on s-0, x (large) on s-1, f evens the loads (3, 3): m, which reads both,
    # ties and joins x, its largest input, though y is listed first.
    parts = [Partition("y", 1), Partition("x", 3), Partition("f", 2), Partition("m", 1, deps=("y", "x"))]
    plan = balance(parts, TWO, levels={"y": 10, "x": 9, "f": 8, "m": 1})
    assert plan == {"s-0": ["y", "f"], "s-1": ["x", "m"]}


def test_balance_wins_over_locality():
    # b would finish at 2 with its input on s-0, at 1 on the idle s-1: load balance decides.
    assert balance([Partition("a", 1), Partition("b", 1, deps=("a",))], TWO) == {"s-0": ["a"], "s-1": ["b"]}


def test_input_slot_is_used_only_if_it_offers_the_needs():
    # b reads a, which needs the GPU slot; b needs what only the other slot offers: it goes there.
    slots = [Slot("c-0", "c", 1.0, ("ssd",)), Slot("g-0", "g", 1.0, ("gpu",))]
    parts = [Partition("a", 1, needs=("gpu",)), Partition("b", 1, deps=("a",), needs=("ssd",))]
    assert balance(parts, slots) == {"c-0": ["b"], "g-0": ["a"]}


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_dags(data):
    n = data.draw(st.integers(1, 40))
    weights = data.draw(st.lists(st.floats(0.01, 100), min_size=n, max_size=n))
    deps = [data.draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set() for i in range(n)]
    order = data.draw(st.permutations(range(n)))
    parts = [Partition(f"p{i}", weights[i], deps=tuple(f"p{d}" for d in sorted(deps[i]))) for i in order]
    slots = [Slot(f"h-{k}", "h", data.draw(st.sampled_from([1.0, 2.0]))) for k in range(data.draw(st.integers(1, 5)))]
    plan = balance(parts, slots)
    placed = [pid for ids in plan.values() for pid in ids]
    assert sorted(placed) == sorted(p.id for p in parts)
    # bottom levels agree with networkx: own weight plus the heaviest path below
    graph = dag_module.dependency_graph(parts)
    levels = bottom_levels(parts)
    for node in reversed(list(nx.topological_sort(graph))):
        expected = graph.nodes[node]["weight"] + max((levels[c] for c in graph.successors(node)), default=0.0)
        assert levels[node] == pytest.approx(expected)
    # within a slot, an input always comes before the partitions that read it (positive weights)
    for ids in plan.values():
        rank = {pid: k for k, pid in enumerate(ids)}
        for u, v in graph.edges:
            if u in rank and v in rank:
                assert rank[u] < rank[v]


def test_ten_thousand_partition_dag_plans_and_validates():
    parts = wide_dag(10_000, 100)
    slots = [Slot(f"h-{k}", "h") for k in range(16)]
    plan = build_plan("big", {"n": 10_000}, parts, slots)
    assert sum(len(ids) for ids in plan.assignment.values()) == 10_000
    again = WorkPlan.from_json(plan.to_json(), origin="big.json")  # the file check, fingerprint included
    assert again.assignment == plan.assignment
    # near the load bound: the DAG rules only reorder, and move partitions among equal slots
    total = sum(p.weight for p in parts)
    assert plan.makespan() <= total / 16 + max(p.weight for p in parts) + 1e-6


# -- drawing ------------------------------------------------------------------------------------


def test_distrib_graph_writes_a_png(tmp_path):
    image = tmp_path / "plan.png"
    out = run_agi("--apps-path", str(TEST_APPS), "distrib", "toy", "--mode", "p", "--set", 'cluster.workers."127.0.0.1"=2',
                  "--set", "args.chain=true", "--set", "args.n=8", "--graph", str(image))
    assert out.returncode == 0, out.stderr
    assert f"wrote {image}" in out.stderr
    assert "8 partitions on 2 slots" in out.stdout and "critical path 36" in out.stdout  # 1 + 2 + … + 8: a chain
    data = image.read_bytes()
    assert data.startswith(PNG) and 5_000 < len(data) < 5_000_000


def test_a_plan_without_deps_draws_as_one_column(tmp_path):
    plan = build_plan("flat", {}, [Partition(f"p{i}", 1.0) for i in range(12)], TWO)
    path = draw_plan(plan, tmp_path / "flat.png")
    assert path.read_bytes().startswith(PNG)


def test_a_big_plan_draws_without_labels(tmp_path):
    plan = build_plan("big", {}, wide_dag(2_000, 50), [Slot(f"h-{k}", "h") for k in range(24)])
    path = draw_plan(plan, tmp_path / "big.svg")
    assert path.read_text().lstrip().startswith("<?xml")


def test_drawing_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    plan = build_plan("flat", {}, [Partition("a")], TWO)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # what an environment without it gives: ImportError
    with pytest.raises(AgiError) as info:
        draw_plan(plan, tmp_path / "x.png")
    assert "matplotlib" in str(info.value) and info.value.fix == "pip install matplotlib"
