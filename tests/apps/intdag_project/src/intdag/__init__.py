"""A small app for plan round-trip tests: a diamond-shaped DAG of layers whose partitions have int
weights (as many apps write them), unicode ids and nested payloads.

Layer 0 has ``width`` sources ``tâche-0-k``; each partition of layer 1 depends on two sources; one
sink ``puits-Σ`` depends on all of layer 1. Each result is its payload's ``value`` plus the sum of
its dependencies' results.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext


class IntDagArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = 4
    sleep: float = 0.0  # seconds each partition sleeps
    fail_while: str = ""  # a path: the sink fails while this file exists


class IntDag(App):
    Args = IntDagArgs

    def plan(self, args: IntDagArgs) -> list[Partition]:
        w = args.width
        sources = [Partition(f"tâche-0-{k}", weight=k + 1, payload={"value": k, "meta": {"layer": 0, "tags": ["src", "é"]}})
                   for k in range(w)]
        middle = [Partition(f"tâche-1-{k}", weight=2 * (k + 1), payload={"value": 10 * k, "meta": {"layer": 1, "pair": [k, (k + 1) % w]}},
                            deps=tuple(dict.fromkeys((f"tâche-0-{k}", f"tâche-0-{(k + 1) % w}"))))
                  for k in range(w)]
        sink = Partition("puits-Σ", weight=3, payload={"value": 1000, "meta": {"layer": 2, "nested": {"deep": [[1, 2], {"x": None}]}}},
                         deps=tuple(p.id for p in middle))
        return [*sources, *middle, sink]

    def work(self, part: Partition, ctx: WorkContext) -> int:
        if ctx.args.sleep:
            time.sleep(ctx.args.sleep)
        if part.payload["meta"]["layer"] == 2 and ctx.args.fail_while and os.path.exists(ctx.args.fail_while):
            raise RuntimeError(f"{part.id} fails while {ctx.args.fail_while} exists")
        return part.payload["value"] + sum(ctx.deps.values())

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> int:
        return results["puits-Σ"]
