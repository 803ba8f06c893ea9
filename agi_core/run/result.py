"""`RunResult`: what a run gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..executors import Outcome
from ..modes import Mode
from ..plan import WorkPlan

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """The reduced value, every partition's result by id, and where the record is."""

    run_id: str
    app: str
    mode: Mode
    status: str
    value: Any = field(repr=False)
    results: dict[str, Any] = field(repr=False)  # partition results can be large: not in the repr
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
