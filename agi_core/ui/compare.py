"""Compare modes (AGILAB's "benchmark all modes"): the same app and args run in each chosen mode,
one after the other, without the cache (each run computes every partition); the table of wall
times and speed-ups is read from the runs' records, so it can be made again later."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base.errors import AgiError
from ..base.modes import Mode
from ..provenance import RunStore
from .apps import env_for
from .config import UiConfig
from .jobs import Job, Jobs

__all__ = ["CompareRow", "compare_rows", "parse_modes", "start_compare"]


def parse_modes(values: list[str]) -> list[Mode]:
    """The modes chosen (ints or letters), each once, in the order given."""
    modes: list[Mode] = []
    for value in values:
        mode = Mode.parse(value.strip())
        if mode not in modes:
            modes.append(mode)
    if not modes:
        raise AgiError("no mode chosen to compare", fix="tick at least one mode (e.g. 0, p, d and pd)")
    return modes


def start_compare(jobs: Jobs, config: UiConfig, app: str, modes: list[Mode]) -> Job:
    """Run ``app`` in each of ``modes`` (saved settings, no cache), one after the other, each in
    its own process (`ui.detached`)."""
    from ..run import resolve
    from .detached import run_detached

    env = env_for(config, app)
    requests = [resolve(env, mode=mode, cluster=config.share_override() or None, use_cache=False) for mode in modes]

    async def work(job: Job) -> dict[str, Any]:
        runs: list[str] = []
        for number, request in enumerate(requests):
            try:
                result = await run_detached(job, config.state_dir() / "runs" / f"{job.id}-{number}", request.to_json())
                runs.append(result["run_id"])
            except AgiError as exc:  # a mode that fails is a row of the table too
                if getattr(exc, "ui_result", {}).get("run_id"):
                    runs.append(exc.ui_result["run_id"])  # type: ignore[attr-defined]
        return {"app": app, "runs": runs}

    return jobs.start("compare", f"compare modes of {app}: " + ", ".join(f"{m.value} ({m.letters or '-'})" for m in modes), work,
                      app=app)


@dataclass
class CompareRow:
    run_id: str
    mode: int
    letters: str
    status: str
    seconds: float
    speedup: float | None  # the first row's wall time / this one's


def compare_rows(store: RunStore, app: str, run_ids: list[str]) -> list[CompareRow]:
    """The table of ``run_ids`` (in order): wall time and speed-up against the first."""
    rows = []
    for run_id in run_ids:
        record = store.find(str(store.run_dir(app, run_id)))
        rows.append(CompareRow(record.run_id, record.mode.value, record.mode.letters, record.status, record.duration_s, None))
    base = rows[0].seconds if rows and rows[0].status == "ok" else None
    for row in rows:
        row.speedup = base / row.seconds if base and row.seconds > 0 and row.status == "ok" else None
    return rows
