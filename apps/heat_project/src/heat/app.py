"""A parameter sweep of 2-D heat diffusion: how fast does a hot spot on a cold-walled plate fade?

The plate is the unit square, its walls held at temperature 0; a Gaussian hot spot starts on it, and
an optional circular inclusion has a different conductivity. For every grid size and diffusivity
``alpha`` of the sweep, an explicit finite-difference simulation (FTCS) runs to ``t_end``. Late on,
the total heat decays like ``exp(-rate * t)``; on a uniform plate the exact rate is ``2 pi^2 alpha``,
so the sweep also measures the discretisation error, grid size by grid size.

The work is a DAG::

    setup ──► sim-<size>-<alpha> (one per pair) ──► analysis-<size> ──► summary

- ``setup`` builds the initial temperatures and the conductivity map of every grid size;
- each ``sim`` runs one simulation and returns small series (total heat, peak temperature, heat
  through the walls) and the final field, downsampled;
- each ``analysis`` fits the decay rates of one grid size and checks the heat balance;
- ``summary`` writes ``heat_summary.png`` and ``heat_summary.csv`` and returns the numbers.

Every partition declares the args it reads, so the result cache recomputes only what a changed
arg touches: a new ``fit_window`` refits (analyses, summary) without re-simulating; a new ``title``
redraws the summary only.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agi_core import App, Partition, WorkContext

from .kernels import stable_dt

__all__ = ["HeatArgs", "HeatSweep", "exact_rate", "sim_id"]

PNG = "heat_summary.png"
CSV = "heat_summary.csv"
FIELD_MAX = 32  # the final field comes back with at most this many nodes per side
BALANCE_TOLERANCE = 1e-9  # |heat(0) - heat(t_end) - outflow| / heat(0) above this is reported

# Weights are in cell-steps (one node advanced one time step, ~10 ns with NumPy on 64^2 grids); the other
# nodes are given their rough cost in the same unit.
_SETUP_PER_CELL = 20
_ANALYSIS_WEIGHT = 1e5
_SUMMARY_WEIGHT = 2e8  # matplotlib: one to two seconds

# What each kind of partition reads from the args (its cache key); tests check that work() reads
# exactly these.
SETUP_READS = ("sizes", "blob_center", "blob_width", "blob_temperature", "inclusion_conductivity", "inclusion_radius")
SIM_READS = ("t_end", "cfl", "samples")
ANALYSIS_READS = ("fit_window",)
SUMMARY_READS = ("title",)


class HeatArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sizes: list[int] = Field(default=[32, 48, 64], description="grid sizes: interior nodes per side of the plate")
    alphas: list[float] = Field(default=[1.0, 1.2, 1.4, 1.6, 1.8, 2.0],
                                description="diffusivities of the sweep (plate side = 1)")
    t_end: float = Field(default=0.15, gt=0, description="physical time each simulation runs to")
    cfl: float = Field(default=0.9, gt=0, le=1,
                       description="safety factor on the stable step: dt <= cfl * h^2 / (4 alpha k_max)")
    samples: int = Field(default=200, ge=10, le=100_000, description="time samples of total heat and peak temperature")
    fit_window: tuple[float, float] = Field(
        default=(1e-4, 0.2),
        description="fit the decay rate where the remaining fraction of the initial heat lies in [low, high]")
    blob_center: tuple[float, float] = Field(default=(0.5, 0.5), description="centre (x, y) of the hot spot")
    blob_width: float = Field(default=0.08, gt=0, le=0.5, description="standard deviation of the Gaussian hot spot")
    blob_temperature: float = Field(default=1.0, gt=0, description="initial temperature at the centre of the hot spot")
    inclusion_conductivity: float = Field(
        default=1.0, gt=0,
        description="conductivity of a disc in the middle of the plate, relative to the rest (1: uniform plate)")
    inclusion_radius: float = Field(default=0.25, ge=0, le=0.5, description="radius of that disc")
    title: str = Field(default="2-D heat diffusion: decay of a hot spot", description="title of the summary plot")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if not sizes:
            raise ValueError("sizes is empty: give at least one grid size, e.g. [32, 64]")
        bad = [n for n in sizes if not 4 <= n <= 8192]
        if bad:
            raise ValueError(f"grid sizes must be between 4 and 8192 nodes per side, got {bad}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"sizes has duplicates: {sizes}")
        return sizes

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, alphas: list[float]) -> list[float]:
        if not alphas:
            raise ValueError("alphas is empty: give at least one diffusivity, e.g. [1.0, 2.0]")
        bad = [a for a in alphas if not (math.isfinite(a) and a > 0)]
        if bad:
            raise ValueError(f"diffusivities must be positive and finite, got {bad}")
        if len(set(alphas)) != len(alphas):
            raise ValueError(f"alphas has duplicates: {alphas}")
        return alphas

    @field_validator("fit_window")
    @classmethod
    def _fit_window(cls, window: tuple[float, float]) -> tuple[float, float]:
        low, high = window
        if not 0 < low < high <= 1:
            raise ValueError(f"fit_window must be two heat fractions with 0 < low < high <= 1, got [{low}, {high}]")
        return window

    @field_validator("blob_center")
    @classmethod
    def _blob_center(cls, center: tuple[float, float]) -> tuple[float, float]:
        if not all(0 < c < 1 for c in center):
            raise ValueError(f"blob_center must lie inside the plate (0 < x, y < 1), got {list(center)}")
        return center

    @model_validator(mode="after")
    def _steps_fit(self) -> HeatArgs:
        k_max = max(1.0, self.inclusion_conductivity)
        _, steps = stable_dt(1.0 / (max(self.sizes) + 1), max(self.alphas), k_max, self.t_end, self.cfl)
        if steps > 10**9:
            raise ValueError(f"the largest simulation would take {steps:,} time steps: lower t_end, alphas or sizes")
        return self


def sim_id(size: int, alpha: float) -> str:
    """The id of the simulation of one grid size and diffusivity (``repr`` keeps distinct alphas distinct)."""
    return f"sim-{size}-{alpha!r}"


def exact_rate(alpha: float, conductivity: float = 1.0) -> float:
    """Late decay rate of the total heat on a uniform plate with cold walls: ``2 pi^2 alpha k``."""
    return 2.0 * math.pi**2 * alpha * conductivity


class HeatSweep(App):
    """Heat diffusion on a plate, swept over grid sizes and diffusivities; writes a plot and a table."""

    Args = HeatArgs

    def plan(self, args: HeatArgs) -> list[Partition]:
        k_max = max(1.0, args.inclusion_conductivity)
        parts = [Partition(id="setup", weight=float(_SETUP_PER_CELL * sum((n + 2) ** 2 for n in args.sizes)),
                           payload=None, reads=SETUP_READS)]
        analyses = []
        for n in args.sizes:
            sims = []
            for alpha in args.alphas:
                _, steps = stable_dt(1.0 / (n + 1), alpha, k_max, args.t_end, args.cfl)
                pid = sim_id(n, alpha)
                parts.append(Partition(id=pid, weight=float(n * n * steps), payload={"size": n, "alpha": alpha},
                                       deps=("setup",), reads=SIM_READS))
                sims.append(pid)
            analyses.append(f"analysis-{n}")
            parts.append(Partition(id=analyses[-1], weight=_ANALYSIS_WEIGHT, payload={"size": n}, deps=tuple(sims),
                                   reads=ANALYSIS_READS))
        parts.append(Partition(id="summary", weight=_SUMMARY_WEIGHT, payload=None, deps=tuple(analyses),
                               reads=SUMMARY_READS))
        return parts

    def work(self, part: Partition, ctx: WorkContext) -> Any:
        if part.id == "setup":
            return run_setup(ctx.args)
        if part.id.startswith("sim-"):
            return run_sim(part.payload["size"], part.payload["alpha"], ctx.deps["setup"][part.payload["size"]],
                            ctx.args, ctx.kernels)
        if part.id.startswith("analysis-"):
            return run_analysis(part.payload["size"], [ctx.deps[d] for d in part.deps], ctx.args, ctx.log)
        if part.id == "summary":
            return run_summary([ctx.deps[d] for d in part.deps], ctx.args, ctx)
        raise ValueError(f"unknown partition {part.id!r}")

    def reduce(self, results: Mapping[str, Any], ctx: WorkContext) -> dict[str, Any]:
        # The summary partition wrote the files (so a cached summary brings them back); its result is the run's value.
        return results["summary"]


# -- setup -----------------------------------------------------------------------------------------


def run_setup(args: Any) -> dict[int, dict[str, Any]]:
    """Initial temperatures ``u0`` (``(n, n)`` interior nodes) and conductivity map ``k``
    (``(n + 2, n + 2)``, walls included) for every grid size."""
    out = {}
    for n in args.sizes:
        h = 1.0 / (n + 1)
        x = np.arange(n + 2) * h  # node coordinates, walls included
        X, Y = np.meshgrid(x, x, indexing="ij")
        cx, cy = args.blob_center
        u0 = args.blob_temperature * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2.0 * args.blob_width**2))
        k = np.ones((n + 2, n + 2))
        k[(X - 0.5) ** 2 + (Y - 0.5) ** 2 <= args.inclusion_radius**2] = args.inclusion_conductivity
        uniform = bool(k.min() == k.max())
        out[n] = {"u0": u0[1:-1, 1:-1], "k": k, "h": h, "k_max": float(k.max()),
                  "uniform_conductivity": float(k[0, 0]) if uniform else None}
    return out


# -- one simulation ----------------------------------------------------------------------------------


def run_sim(n: int, alpha: float, grid: Mapping[str, Any], args: Any, kernels: Any) -> dict[str, Any]:
    h = grid["h"]
    dt, steps = stable_dt(h, alpha, grid["k_max"], args.t_end, args.cfl)
    every = max(1, steps // args.samples)
    run = kernels.simulate(grid["u0"], grid["k"], alpha, dt, h, steps, every)
    heat = run["heat"]
    stride = max(1, math.ceil(n / FIELD_MAX))
    uniform = grid["uniform_conductivity"]
    return {
        "size": n, "alpha": alpha, "dt": dt, "steps": steps,
        "t": run["step"] * dt, "heat": heat, "peak": run["peak"], "outflow": run["outflow"],
        "balance_error": float(abs(heat[0] - heat[-1] - run["outflow"][-1]) / heat[0]),
        "field": run["field"][stride // 2::stride, stride // 2::stride].astype(np.float32),
        "exact_rate": exact_rate(alpha, uniform) if uniform is not None else None,
    }


# -- analysis of one grid size -----------------------------------------------------------------------


def fit_rate(t: np.ndarray, heat: np.ndarray, window: tuple[float, float]) -> tuple[float | None, int]:
    """Decay rate of ``heat`` (least squares on ``log(heat)``) where ``heat / heat[0]`` lies in
    ``window``; None when fewer than 3 samples do. Returns the rate and the number of samples used.

    >>> t = np.linspace(0, 1, 50)
    >>> rate, used = fit_rate(t, 2 * np.exp(-3 * t), (1e-3, 1.0))
    >>> round(rate, 9), used
    (3.0, 50)
    """
    fraction = heat / heat[0]
    inside = (fraction >= window[0]) & (fraction <= window[1])
    used = int(inside.sum())
    if used < 3:
        return None, used
    slope = np.polyfit(t[inside], np.log(heat[inside]), 1)[0]
    return float(-slope), used


def run_analysis(n: int, sims: list[Mapping[str, Any]], args: Any, log: Any) -> dict[str, Any]:
    window = tuple(args.fit_window)
    rows, problems = [], []
    for sim in sorted(sims, key=lambda s: s["alpha"]):
        alpha = sim["alpha"]
        rate, used = fit_rate(sim["t"], sim["heat"], window)
        if rate is None:
            problems.append(f"size {n}, alpha {alpha:g}: only {used} samples with the heat fraction in fit_window "
                            f"{list(window)} (it ends at {sim['heat'][-1] / sim['heat'][0]:.3g}); raise t_end or widen fit_window")
        exact = sim["exact_rate"]
        heat = sim["heat"]
        if np.any(np.diff(heat) > 1e-12 * heat[0]):
            problems.append(f"size {n}, alpha {alpha:g}: the total heat grew at some step (unstable time step?)")
        if np.any(np.diff(sim["peak"]) > 1e-12 * sim["peak"][0]):
            problems.append(f"size {n}, alpha {alpha:g}: the peak temperature grew (the maximum principle fails)")
        if sim["balance_error"] > BALANCE_TOLERANCE:
            problems.append(f"size {n}, alpha {alpha:g}: heat balance off by {sim['balance_error']:.2e} of the initial heat")
        rows.append({
            "size": n, "alpha": alpha, "steps": sim["steps"], "dt": sim["dt"], "rate": rate, "fit_samples": used,
            "rate_over_alpha": rate / alpha if rate is not None else None,
            "exact_rate": exact, "relative_error": (rate / exact - 1.0) if rate is not None and exact else None,
            "heat_fraction_end": float(heat[-1] / heat[0]), "peak_end": float(sim["peak"][-1]),
            "balance_error": sim["balance_error"],
            # series for the plot, and the final field
            "t": sim["t"], "peak": sim["peak"], "heat_fraction": heat / heat[0], "field": sim["field"],
        })
    fitted = [(r["alpha"], r["rate"]) for r in rows if r["rate"] is not None]
    # rate = lambda * alpha for linear diffusion: the slope through the origin
    decay_constant = (sum(a * r for a, r in fitted) / sum(a * a for a, _ in fitted)) if fitted else None
    exact = rows[0]["exact_rate"] / rows[0]["alpha"] if rows and rows[0]["exact_rate"] else None
    for problem in problems:
        log.warning("%s", problem)
    return {"size": n, "fit_window": list(window), "rows": rows, "decay_constant": decay_constant,
            "exact_decay_constant": exact,
            "relative_error": (decay_constant / exact - 1.0) if decay_constant is not None and exact else None,
            "max_balance_error": max(r["balance_error"] for r in rows), "problems": problems}


# -- summary -----------------------------------------------------------------------------------------

CSV_COLUMNS = ("size", "alpha", "steps", "dt", "rate", "rate_over_alpha", "exact_rate", "relative_error", "fit_samples",
               "heat_fraction_end", "peak_end", "balance_error")


def run_summary(analyses: list[Mapping[str, Any]], args: Any, ctx: WorkContext) -> dict[str, Any]:
    analyses = sorted(analyses, key=lambda a: a["size"])
    with open(ctx.output(CSV), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for analysis in analyses:
            for row in analysis["rows"]:
                writer.writerow(["" if row[c] is None else (f"{row[c]:.10g}" if isinstance(row[c], float) else row[c])
                                 for c in CSV_COLUMNS])
    plot(analyses, args.title, ctx.output(PNG))
    finest = analyses[-1]
    return {
        "title": args.title,
        "sizes": [a["size"] for a in analyses],
        "alphas": [r["alpha"] for r in finest["rows"]],
        "rates": {repr(r["alpha"]): r["rate"] for r in finest["rows"]},  # finest grid, keyed by alpha
        "rates_by_size": {str(a["size"]): [r["rate"] for r in a["rows"]] for a in analyses},
        "decay_constant": {str(a["size"]): a["decay_constant"] for a in analyses},
        "exact_decay_constant": finest["exact_decay_constant"],
        "relative_error": {str(a["size"]): a["relative_error"] for a in analyses},
        "max_balance_error": max(a["max_balance_error"] for a in analyses),
        "problems": [p for a in analyses for p in a["problems"]],
        "files": [PNG, CSV],
    }


def plot(analyses: list[Mapping[str, Any]], title: str, path: Any) -> None:
    """Four panels: peak temperature and remaining heat against time (finest grid, one line per
    alpha), fitted rate against alpha (one series per grid size), and the final field."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend (renders with Agg)

    finest = analyses[-1]
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    fig.suptitle(title)
    (peak_ax, heat_ax), (rate_ax, field_ax) = fig.subplots(2, 2)
    for colour, row in zip(_colours(len(finest["rows"])), finest["rows"]):
        peak_ax.plot(row["t"], row["peak"], color=colour, label=f"α = {row['alpha']:g}")
        heat_ax.semilogy(row["t"], row["heat_fraction"], color=colour)
    peak_ax.set_yscale("log")
    peak_ax.set(xlabel="time", ylabel="peak temperature", title=f"peak temperature ({finest['size']}² grid)")
    peak_ax.legend(fontsize="small")
    low, high = finest["fit_window"]
    heat_ax.axhspan(low, high, color="0.9", zorder=0, label="fit window")
    heat_ax.set(xlabel="time", ylabel="heat / initial heat", title="total heat (cold walls)")
    heat_ax.legend(fontsize="small")
    for analysis, marker in zip(analyses, "osD^v<>ph*"):
        fitted = [(r["alpha"], r["rate"]) for r in analysis["rows"] if r["rate"] is not None]
        if fitted:
            error = analysis["relative_error"]
            label = f"{analysis['size']}² grid" + (f" (error {error:+.2%})" if error is not None else "")
            rate_ax.plot(*zip(*fitted), marker=marker, linestyle="", label=label)
    if finest["exact_decay_constant"]:
        alphas = np.array([r["alpha"] for r in finest["rows"]])
        span = np.linspace(0, alphas.max() * 1.05, 2)
        rate_ax.plot(span, finest["exact_decay_constant"] * span, color="0.4", linewidth=1, label="exact 2π²α")
    rate_ax.set(xlabel="diffusivity α", ylabel="decay rate of total heat", title="fitted decay rate")
    rate_ax.set_xlim(left=0)
    rate_ax.set_ylim(bottom=0)
    rate_ax.legend(fontsize="small")
    row = finest["rows"][0]
    image = field_ax.imshow(row["field"].T, origin="lower", extent=(0, 1, 0, 1), cmap="inferno")
    field_ax.set(title=f"temperature at t = {row['t'][-1]:g} (α = {row['alpha']:g})", xlabel="x", ylabel="y")
    fig.colorbar(image, ax=field_ax, label="temperature")
    fig.savefig(path, dpi=90)


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    ramp = colormaps["viridis"]
    return [ramp(i / max(count - 1, 1) * 0.9) for i in range(count)]
