"""A small app for tests: partition i returns i*i (plus its dependencies' results)."""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext


class ToyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 6
    sleep: float = 0.0  # seconds each partition sleeps
    fail_on: list[int] = []  # partitions that raise
    crash_on: list[int] = []  # partitions that kill their worker process (os._exit)
    unpicklable_on: list[int] = []  # partitions whose result cannot be pickled (a lambda)
    chain: bool = False  # partition i depends on i-1 (a DAG)
    need_gpu: list[int] = []  # partitions that need the "gpu" capability
    write_files: bool = False  # each partition writes out_dir/part-i.txt
    file_kb: int = 0  # with write_files: each file is padded to this many KiB (a share that fills up)
    offset: int = 0  # added to every square: the one arg results read (see `reads` below)
    stray_files: bool = False  # each partition writes out_dir/stray-i.txt without declaring it
    fail_while: str = ""  # a path: partitions in fail_on fail only while this file exists
    private: str = ""  # a module file (a class Frame(dict)) that only the processes running private_on import
    private_on: list[int] = []  # partitions that return a `private` Frame: other processes cannot load it
    mark_dir: str = ""  # a folder: partition i writes its pid to running-p<i> there when it starts
    hang_on: list[int] = []  # partitions that hang (sleep for ever); with mark_dir, only on their first run


def _private_frame(path: str, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as a Frame of the module at ``path``, imported from its folder, which this process
    puts on its own path: a process that did not (the manager) cannot unpickle it, as a manager
    without polars cannot load a polars frame its workers return."""
    folder, name = os.path.split(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name.removesuffix(".py")).Frame(value)


class Toy(App):
    Args = ToyArgs

    def plan(self, args: ToyArgs) -> list[Partition]:
        return [
            Partition(
                id=f"p{i}",
                weight=float(i + 1),
                payload={"i": i},
                deps=(f"p{i - 1}",) if args.chain and i > 0 else (),
                needs=("gpu",) if i in args.need_gpu else (),
                # Results depend on the offset (and, through the key, on deps and payload); the
                # other args only inject faults or delays, so changing them recomputes nothing.
                reads=("offset", "write_files"),
            )
            for i in range(args.n)
        ]

    def work(self, part: Partition, ctx: WorkContext) -> dict[str, Any]:
        i = part.payload["i"]
        if ctx.args.mark_dir:
            marker = os.path.join(ctx.args.mark_dir, f"running-p{i}")
            first = not os.path.exists(marker)
            with open(marker + ".tmp", "w") as out:
                out.write(str(os.getpid()))
            os.replace(marker + ".tmp", marker)
            if i in ctx.args.hang_on and first:
                while True:
                    time.sleep(1)
        elif i in ctx.args.hang_on:
            while True:
                time.sleep(1)
        if ctx.args.sleep:
            time.sleep(ctx.args.sleep)
        if i in ctx.args.crash_on:
            os._exit(3)
        if i in ctx.args.unpicklable_on:
            return {"square": i * i, "f": lambda: i}
        if i in ctx.args.fail_on and (not ctx.args.fail_while or os.path.exists(ctx.args.fail_while)):
            raise ValueError(f"toy failure in partition {i}")
        if ctx.args.stray_files:
            (ctx.out_dir / f"stray-{i}.txt").write_text(str(i))
        if ctx.args.write_files:
            ctx.output(f"part-{i}.txt").write_text(f"{i} {os.getpid()}".ljust(ctx.args.file_kb * 1024))
        result = {"square": i * i + ctx.args.offset, "pid": os.getpid(), "deps": {k: v["square"] for k, v in ctx.deps.items()}, "slot": ctx.slot}
        return _private_frame(ctx.args.private, result) if i in ctx.args.private_on else result

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> int:
        return sum(r["square"] for r in results.values())
