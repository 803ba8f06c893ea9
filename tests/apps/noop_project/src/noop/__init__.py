"""n partitions that return their index: what is left is agi_core's own cost per partition."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext


class NoopArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 1000
    layers: int = 0  # > 0: a DAG of that many layers, each node depending on two of the layer before
    result_kb: int = 0  # > 0: each result also carries that many KiB (big messages between processes)


class Noop(App):
    Args = NoopArgs

    def plan(self, args: NoopArgs) -> list[Partition]:
        if args.layers <= 0:
            return [Partition(id=f"n{i}", payload=i) for i in range(args.n)]
        width = max(1, args.n // args.layers)
        parts = []
        for i in range(args.n):
            layer, k = divmod(i, width)
            deps = () if layer == 0 else tuple(dict.fromkeys(f"n{(layer - 1) * width + j % width}" for j in (k, k + 1)))
            parts.append(Partition(id=f"n{i}", payload=i, deps=deps))
        return parts

    def work(self, part: Partition, ctx: WorkContext) -> Any:
        return part.payload if not ctx.args.result_kb else (part.payload, "x" * (ctx.args.result_kb << 10))

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> int:
        return len(results)
