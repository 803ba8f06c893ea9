"""A test app that reads files: one partition per text file of a folder counts its words, a
``total`` partition sums them (a DAG), and an optional ``all`` partition declares the whole folder.

Relative paths (``data``, ``shared``, ``peek``) are relative to the share, as declared inputs are;
the app is given the share in ``share`` because plan() and work() open the files themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from agi_core import App, Partition, WorkContext


class TextsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = "texts"  # the folder of .txt files
    share: str = ""  # where relative paths start (the run's share)
    declare: bool = True  # partitions declare the file they read
    folder: bool = False  # add a partition "all" that declares the whole folder and counts every file in it
    shared: str = ""  # a file every partition declares (as written: relative stays relative) but does not read
    peek: str = ""  # a file every partition reads without declaring it


def _path(args: TextsArgs, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else Path(args.share) / path


class Texts(App):
    Args = TextsArgs

    def plan(self, args: TextsArgs) -> list[Partition]:
        files = sorted(_path(args, args.data).glob("*.txt"))
        extra = (args.shared,) if args.shared else ()
        parts = [Partition(f.stem, weight=f.stat().st_size or 1, payload={"file": str(f)},
                           inputs=((str(f),) if args.declare else ()) + extra, reads=("peek",))
                 for f in files]
        parts.append(Partition("total", weight=1, deps=tuple(p.id for p in parts), reads=()))
        if args.folder:
            parts.append(Partition("all", weight=len(files), payload={"folder": args.data}, inputs=(args.data,), reads=()))
        return parts

    def work(self, part: Partition, ctx: WorkContext) -> Any:
        if part.id == "total":
            return sum(ctx.deps.values())
        if part.id == "all":
            return sum(len(f.read_text().split()) for f in sorted(_path(ctx.args, part.payload["folder"]).rglob("*.txt")))
        if ctx.args.peek:
            _path(ctx.args, ctx.args.peek).read_text()
        return len(Path(part.payload["file"]).read_text().split())
