"""n partitions for cache audits: ``kind = "random"`` returns ``random.random()`` (a cache hit of
it is never what a recomputation gives); ``kind = "shuffled"`` returns the same values every time,
built in a random order, so their pickles differ from run to run (an audit must not call that a
mismatch)."""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext


class DiceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 10
    kind: Literal["random", "shuffled"] = "random"
    chain: bool = False  # partition i depends on i-1 (a DAG)


class Dice(App):
    Args = DiceArgs

    def plan(self, args: DiceArgs) -> list[Partition]:
        return [Partition(id=f"d{i}", payload=i, deps=(f"d{i - 1}",) if args.chain and i > 0 else ()) for i in range(args.n)]

    def work(self, part: Partition, ctx: WorkContext) -> Any:
        if ctx.args.kind == "random":
            return random.random()
        import numpy as np

        i = part.payload
        order = list(range(12))
        random.shuffle(order)
        return {"i": i, "squares": {f"k{j}": j * j + i for j in order},  # same dict, another insertion order
                "names": frozenset(f"name-{j}" for j in order), "grid": np.array([i, np.nan, -0.5, 1e300])}

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> int:
        return len(results)
