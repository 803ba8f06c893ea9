"""A test app for GPU placement: partition i scales ``arange(size)`` by i+1 and sums it.

Partitions in ``need_gpu`` need a GPU slot, those in ``prefer_gpu`` prefer one; `work` runs the
kernel module the worker chose (numba.cuda on a GPU or its simulator, NumPy elsewhere) and says
which, where.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext


class GpuToyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 6
    size: int = 64
    need_gpu: list[int] = []
    prefer_gpu: list[int] = []


class GpuToy(App):
    Args = GpuToyArgs

    def plan(self, args: GpuToyArgs) -> list[Partition]:
        return [Partition(id=f"p{i}", weight=1.0, payload={"i": i},
                          needs=("gpu",) if i in args.need_gpu else (), prefers=("gpu",) if i in args.prefer_gpu else ())
                for i in range(args.n)]

    def work(self, part: Partition, ctx: WorkContext) -> dict[str, Any]:
        i = part.payload["i"]
        values = ctx.kernels.scale(np.arange(ctx.args.size, dtype=np.float64), float(i + 1))
        return {"sum": float(values.sum()), "kernel": ctx.kernel_kind, "device": ctx.device, "host": socket.gethostname(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> float:
        return sum(r["sum"] for r in results.values())
