"""`RunResult`: what a run gives back."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.modes import Mode
from ..executors import Outcome
from ..plan import WorkPlan

__all__ = ["ResultsView", "RunResult"]


class ResultsView(Mapping[str, Any]):
    """Partition id → result, for every partition that succeeded (or came from the cache), read
    from the run's outcomes: a run of 1,000,000 partitions need not build a second dict of them.

    >>> view = ResultsView({"a": Outcome("a", "s0", "ok", result=1), "b": Outcome("b", "s0", "failed")})
    >>> dict(view), "b" in view, len(view)
    ({'a': 1}, False, 1)
    """

    def __init__(self, outcomes: Mapping[str, Outcome]) -> None:
        self._outcomes = outcomes
        self._count: int | None = None

    def __getitem__(self, pid: str) -> Any:
        outcome = self._outcomes[pid]
        if not outcome.ok:
            raise KeyError(pid)
        return outcome.result

    def __contains__(self, pid: object) -> bool:
        outcome = self._outcomes.get(pid)  # type: ignore[call-overload]
        return outcome is not None and outcome.ok

    def __iter__(self) -> Iterator[str]:
        return (pid for pid, outcome in self._outcomes.items() if outcome.ok)

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for outcome in self._outcomes.values() if outcome.ok)
        return self._count

    def __repr__(self) -> str:
        return f"ResultsView({len(self)} results)"


@dataclass
class RunResult:
    """The reduced value, every partition's result by id, and where the record is.

    ``results`` is a read-only mapping (`ResultsView`: id -> result of each partition that
    succeeded or came from the cache), read from ``outcomes``; ``dict(result.results)`` makes a
    dict of it when one is needed."""

    run_id: str
    app: str
    mode: Mode
    status: str
    value: Any = field(repr=False)
    results: Mapping[str, Any] = field(repr=False)  # id -> result (`ResultsView`); large: not in the repr
    outcomes: list[Outcome] = field(repr=False)
    run_dir: Path
    plan: WorkPlan = field(repr=False)
    duration_s: float = 0.0

    @property
    def out_dir(self) -> Path:
        return self.run_dir / "out"

    @property
    def manifest(self) -> Path:
        return self.run_dir / "manifest.json"
