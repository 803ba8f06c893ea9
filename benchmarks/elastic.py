"""Elastic runs: the cost of a re-balance at 100,000 partitions, and of a late joiner.

1. Re-balance (`executors.elastic.BatchQueues`), 100,000 partitions with lognormal weights planned
   over 16 slots, 8 of which never joined: their batches go to the other 8 (`orphan`), then a
   late worker takes its share (`steal`). Measured for the executor's batching (at most
   ``max_tasks_per_slot`` = 16 batches per slot, the default) and for the worst case of one
   partition per batch (100,000 batches); the time includes weighing every batch (its
   partitions' weights, which the executor does only once something has to move).
2. Late joiner, real Dask workers on this machine (the test backend of tests/elastic_backend.py):
   the toy app, 64 partitions of 0.1 s on 2 slots, the second slot's worker started after the
   first partition is done; reported: seconds from starting its process to the run seeing it
   join, and from the join to its first partition done (that includes the partition's 0.1 s).

Usage: python benchmarks/elastic.py [--partitions 100000] [--repeats 5] [--no-late]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _common import summary, timed, write  # noqa: E402

from agi_core.executors.elastic import Batch, BatchQueues  # noqa: E402


def rebalance(partitions: int, per_batch_max: int | None, repeats: int) -> dict:
    rng = random.Random(42)
    weights = [rng.lognormvariate(0.0, 1.0) for _ in range(partitions)]
    slots = [f"h{k // 4}-{k % 4}" for k in range(16)]
    ids = [f"p{i}" for i in range(partitions)]
    per_slot = {slot: list(range(k, partitions, len(slots))) for k, slot in enumerate(slots)}
    batches: list[Batch] = []
    for slot, members in per_slot.items():
        count = len(members) if per_batch_max is None else min(len(members), max(per_batch_max, -(-len(members) // 1000)))
        for k in range(count):
            chunk = members[k::count]
            batches.append(Batch(len(batches), slot, [ids[i] for i in chunk]))
    weight_of = dict(zip(ids, weights, strict=True))  # as the executor weighs: by id, from the plan

    def weigh(batch: Batch) -> tuple[float, frozenset[str]]:
        return float(sum(weight_of[pid] for pid in batch.ids)), frozenset()

    moved = {}

    def once() -> None:
        for batch in batches:
            batch.moves = 0
        queues = BatchQueues(batches)
        queues.reweigh(weigh)  # the executor weighs the queued batches before the first move
        orphans = queues.orphan(slots[8:], slots[:8])
        late = queues.steal("late-0")
        moved.update(orphaned=sum(m.count for m in orphans), taken_by_late_joiner=sum(m.count for m in late))

    times = timed(once, repeats)
    return {"batches": len(batches), "time": summary(times), **moved}


def late_joiner() -> dict:
    from agi_core import AGI, AgiEnv
    from agi_core.base.events import PartitionDone, WorkerJoined
    from agi_core.settings.backend_plugins import BUILTIN_BACKENDS

    BUILTIN_BACKENDS["elastictest"] = {"class": "tests.elastic_backend:ElasticTestCluster", "err": "tests only"}
    env = AgiEnv(app="toy", apps_path=ROOT / "tests" / "apps")
    with tempfile.TemporaryDirectory() as tmp:
        gate = Path(tmp) / "late"
        cluster = {"workers_data_path": tmp, "workers": {"127.0.0.1": 2}, "tls": False, "backend": "elastictest",
                   "min_workers": 1, "elastictest": {"late": {"127.0.0.1-1": str(gate)}}}
        marks: dict[str, float] = {}

        def sink(event: object) -> None:
            if isinstance(event, PartitionDone) and "gate" not in marks:
                gate.touch()
                marks["gate"] = time.perf_counter()
            elif isinstance(event, WorkerJoined) and event.slot == "127.0.0.1-1":
                marks.setdefault("joined", time.perf_counter())
            elif isinstance(event, PartitionDone) and event.worker == "127.0.0.1-1":
                marks.setdefault("first", time.perf_counter())

        result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, n=64, sleep=0.1, use_cache=False, on_event=sink))
    return {"status": result.status, "partitions": 64, "partition_s": 0.1,
            "start_to_join_s": round(marks["joined"] - marks["gate"], 3),
            "join_to_first_partition_done_s": round(marks["first"] - marks["joined"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-late", action="store_true", help="skip the real late joiner")
    options = parser.parse_args()
    data = {
        "partitions": options.partitions, "slots": 16, "absent_at_start": 8, "weights": "lognormal(0, 1), seed 42",
        "rebalance_executor_batches": rebalance(options.partitions, 16, options.repeats),
        "rebalance_one_partition_per_batch": rebalance(options.partitions, None, options.repeats),
    }
    if not options.no_late:
        data["late_joiner"] = late_joiner()
    write("elastic", data)


if __name__ == "__main__":
    main()
