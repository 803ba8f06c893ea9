"""Fleet telemetry: how much fuel does each aircraft burn, phase by phase, over many flights?

The dataset is one file per flight (second-by-second telemetry: altitude, ground speed, fuel flow,
exhaust gas temperature), generated on the first run from a seed (`data.ensure_dataset`). Each
partition is one file, weighted by its size; `work` aggregates it per tail number and flight phase
with the kernel module the worker chose: pandas on CPU, cuDF on a GPU worker (rapids bit), through
the same functions (`kernels.summarise_file` given the dataframe module). `reduce` combines the
per-file sums into ``fleet_summary.csv`` and draws ``fleet_summary.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agi_core import App, Partition, WorkContext
from agi_core.base.paths import default_share

from .data import PHASES, ensure_dataset

__all__ = ["FlightArgs", "FlightTelemetry"]

CSV = "fleet_summary.csv"
PNG = "fleet_summary.png"
DATASET_READS = ("flights", "min_rows", "max_rows", "seed", "format", "data_dir")


class FlightArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flights: int = Field(default=48, ge=1, le=100_000, description="files in the dataset: one per flight")
    min_rows: int = Field(default=20_000, ge=100, description="rows (seconds) of the shortest flight")
    max_rows: int = Field(default=120_000, ge=100, description="rows of the longest flight")
    seed: int = Field(default=2026, description="the dataset's random seed")
    format: Literal["parquet", "csv"] = Field(default="parquet", description="file format of the dataset")
    data_dir: str | None = Field(default=None, description="where the dataset is kept (on a cluster: a folder of the "
                                 "share, the same path on every node); None: <default share>/data/flight_telemetry")
    title: str = Field(default="Fleet telemetry: fuel flow by flight phase", description="title of the plot")
    gpu: Literal["prefer", "need", "any"] = Field(default="prefer", description="partitions prefer GPU workers, need "
                                                  "them, or do not care")

    @model_validator(mode="after")
    def _rows(self) -> FlightArgs:
        if self.max_rows < self.min_rows:
            raise ValueError(f"max_rows ({self.max_rows}) is below min_rows ({self.min_rows})")
        return self

    def data_root(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_share() / "data" / "flight_telemetry"


class FlightTelemetry(App):
    """One partition per flight file; pandas or cuDF by worker; a fleet summary table and plot."""

    Args = FlightArgs

    def plan(self, args: FlightArgs) -> list[Partition]:
        files = ensure_dataset(args.data_root(), flights=args.flights, min_rows=args.min_rows, max_rows=args.max_rows,
                               seed=args.seed, fmt=args.format)
        gpu = ("gpu",)
        # inputs: the file's size and modification time enter the partition's cache key, so an
        # edited or replaced flight file is read again (the payload alone names it, not its content)
        return [Partition(id=path.stem, weight=float(path.stat().st_size), payload={"path": str(path)},
                          needs=gpu if args.gpu == "need" else (), prefers=gpu if args.gpu == "prefer" else (),
                          reads=DATASET_READS, inputs=(str(path.resolve()),))
                for path in files]

    def work(self, part: Partition, ctx: WorkContext) -> pd.DataFrame:
        # pandas or cuDF, whichever module the worker's kernels run on: the same functions either way
        return ctx.kernels.summarise_file(part.payload["path"], ctx.kernels.frame_module())

    def reduce(self, results: Mapping[str, Any], ctx: WorkContext) -> dict[str, Any]:
        summary = combine(results.values())
        summary.to_csv(ctx.output(CSV), index=False, float_format="%.6g")
        plot(summary, ctx.output(PNG), ctx.args.title)
        return {"flights": len(results), "rows": int(summary["rows"].sum()), "fuel_t": round(float(summary["fuel_kg"].sum()) / 1000, 3),
                "tails": int(summary["tail"].nunique()), "files": [CSV, PNG]}


def combine(frames: Any) -> pd.DataFrame:
    """The per-file sums combined exactly: totals, means from sums over counts, extremes of extremes."""
    both = pd.concat(list(frames), ignore_index=True)
    total = both.groupby(["tail", "phase"], sort=True).agg(
        rows=("rows", "sum"), fuel_kg=("fuel_kg", "sum"), speed_sum=("speed_sum", "sum"), egt_sum=("egt_sum", "sum"),
        max_altitude_ft=("max_altitude_ft", "max"), max_egt_c=("max_egt_c", "max"), overheat_s=("overheat_s", "sum"),
    ).reset_index()
    total["mean_ground_speed_kt"] = total.pop("speed_sum") / total["rows"]
    total["mean_egt_c"] = total.pop("egt_sum") / total["rows"]
    total["fuel_kg_per_hour"] = total["fuel_kg"] / (total["rows"] / 3600.0)
    return total


def plot(summary: pd.DataFrame, path: Path, title: str) -> None:
    """Fuel burn rate by phase, one bar group per phase, one bar per tail (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary.pivot(index="phase", columns="tail", values="fuel_kg_per_hour").reindex(list(PHASES))
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    table.plot.bar(ax=ax, width=0.85)
    ax.legend(title="tail", fontsize=7, title_fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_ylabel("fuel burn (kg/h)")
    ax.set_xlabel("flight phase")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
