"""`balance()` on 100,000 partitions with lognormal weights over 16 slots.

Reports the time and the makespan divided by the lower bound max(largest weight, total/slots),
and, as a baseline in the same run, round-robin assignment (what a naive split gives).

Usage: python benchmarks/balance.py [--partitions 100000] [--slots 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, timed, write  # noqa: E402

from agi_core import Partition  # noqa: E402
from agi_core.plan import Slot, balance, makespan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=100_000)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    rng = random.Random(42)
    weights = [rng.lognormvariate(0.0, 1.0) for _ in range(options.partitions)]
    parts = [Partition(f"p{i}", w) for i, w in enumerate(weights)]
    slots = [Slot(f"h{k // 4}-{k % 4}", f"h{k // 4}") for k in range(options.slots)]
    assignment = {}

    def once() -> None:
        assignment.update(balance(parts, slots))

    times = timed(once, options.repeats)
    by_id = {p.id: p.weight for p in parts}
    bound = max(max(weights), sum(weights) / len(slots))
    round_robin = {s.name: [p.id for p in parts[k:: len(slots)]] for k, s in enumerate(slots)}
    write("balance", {
        "partitions": options.partitions, "slots": options.slots, "weights": "lognormal(0, 1), seed 42",
        "time": summary(times),
        "makespan_over_lower_bound": round(makespan(assignment, by_id, slots) / bound, 6),
        "round_robin_makespan_over_lower_bound": round(makespan(round_robin, by_id, slots) / bound, 6),
    })


if __name__ == "__main__":
    main()
