"""A test app whose partitions need `agi_testdep`, a package only its own environment has."""

from __future__ import annotations

import os
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext


class NeedsDepArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 3


class NeedsDep(App):
    Args = NeedsDepArgs

    def plan(self, args: NeedsDepArgs) -> list[Partition]:
        return [Partition(id=f"p{i}", weight=1.0, payload={"i": i}) for i in range(args.n)]

    def work(self, part: Partition, ctx: WorkContext) -> dict[str, Any]:
        import agi_testdep

        return {"value": agi_testdep.VALUE + part.payload["i"], "python": sys.executable, "pid": os.getpid()}

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> int:
        return sum(r["value"] for r in results.values())
