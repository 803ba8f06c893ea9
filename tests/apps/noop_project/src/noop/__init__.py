"""n partitions that return their index: what is left is agi_core's own cost per partition."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext


class NoopArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 1000


class Noop(App):
    Args = NoopArgs

    def plan(self, args: NoopArgs) -> list[Partition]:
        return [Partition(id=f"n{i}", payload=i) for i in range(args.n)]

    def work(self, part: Partition, ctx: WorkContext) -> int:
        return part.payload

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> int:
        return len(results)
