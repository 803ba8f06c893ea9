"""Word frequencies of a folder's .txt files, one partition per file. Its plan() and reduce() fail
as an app's own code does on bad input: a missing folder (plan() lists it: FileNotFoundError), a
folder without text (the app's own `AgiError`), a word to look up that no file has (reduce())."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from agi_core import AgiError, App, Partition, WorkContext


class WordfreqArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: str = "corpus"  # the folder of .txt files
    word: str = ""  # reduce() returns this word's count: one no file has is an error (a KeyError)


class Wordfreq(App):
    Args = WordfreqArgs

    def plan(self, args: WordfreqArgs) -> list[Partition]:
        folder = Path(args.data_dir)
        files = sorted(p for p in folder.iterdir() if p.suffix == ".txt")  # a missing folder raises here
        if not files:
            raise AgiError(f"no .txt files in {folder.absolute()}", fix="put text files there, or --set data_dir=FOLDER")
        return [Partition(f.stem, weight=f.stat().st_size or 1, payload=str(f.absolute()),
                          inputs=(str(f.absolute()),)) for f in files]

    def work(self, part: Partition, ctx: WorkContext) -> dict[str, int]:
        return dict(Counter(Path(part.payload).read_text().split()))

    def reduce(self, results: dict[str, Any], ctx: WorkContext) -> Any:
        total: Counter[str] = Counter()
        for counts in results.values():
            total.update(counts)
        if ctx.args.word:
            return {ctx.args.word: {w: c for w, c in total.items() if c}[ctx.args.word]}
        return dict(total.most_common(5))
