"""The flight_telemetry dataframe example in modes 0, 1 and 4 (and 8 and 12 where a GPU is), against
plain Dask + pandas doing the same aggregation, in the same run of this script.

- ``mode0``: ``AGI.run(env, mode=0)``: every file in this process;
- ``mode1``: the pool bit: one worker process per core;
- ``mode4``: the cluster bit: an embedded Dask cluster of one worker per core (started and stopped
  by the run, as a run without a warm cluster does);
- ``baseline_dask``: what a user would write without agi_core: a ``distributed.LocalCluster`` of the
  same size, ``client.map`` of the same per-file function over the files, ``client.gather``, the
  same combine and the same CSV + PNG (cluster start and stop included, like mode 4);
- ``baseline_pandas``: a plain loop over the files in this process (what mode 0 does, without agi).
- ``mode8`` / ``mode12``: the rapids bit, cuDF on the GPU; skipped with the reason where there is none.

Ratios are to the baseline of the same kind (mode 0 and 1 to the pandas loop, mode 4 to plain Dask).
The dataset is generated once, before any timing, in a temporary folder.

Usage: python benchmarks/dataframe.py [--repeats 3] [--flights 64] [--min-rows 50000] [--max-rows 250000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, timed, write  # noqa: E402

from agi_core import AGI, AgiEnv  # noqa: E402
from agi_core.gpus import local_gpus  # noqa: E402


def _files(env: AgiEnv, args: dict) -> list[str]:
    plan = asyncio.run(AGI.get_distrib(env, mode=0, **args))
    return [p.payload["path"] for p in plan.partitions]


def baseline_pandas(files: list[str], out: Path, title: str) -> None:
    from flight_telemetry.app import combine, plot
    from flight_telemetry.kernels import summarise_file

    summary_frame = combine(summarise_file(path) for path in files)
    summary_frame.to_csv(out / "fleet_summary.csv", index=False, float_format="%.6g")
    plot(summary_frame, out / "fleet_summary.png", title)


def baseline_dask(files: list[str], out: Path, title: str, workers: int) -> None:
    from distributed import Client, LocalCluster
    from flight_telemetry.app import combine, plot
    from flight_telemetry.kernels import summarise_file

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        frames = client.gather(client.map(summarise_file, files, pure=False))
    summary_frame = combine(frames)
    summary_frame.to_csv(out / "fleet_summary.csv", index=False, float_format="%.6g")
    plot(summary_frame, out / "fleet_summary.png", title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flights", type=int, default=64)
    parser.add_argument("--min-rows", type=int, default=50_000)
    parser.add_argument("--max-rows", type=int, default=250_000)
    opts = parser.parse_args()
    env = AgiEnv(app="flight_telemetry")
    sys.path.insert(0, str(env.src_dir))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        args = {"flights": opts.flights, "min_rows": opts.min_rows, "max_rows": opts.max_rows, "data_dir": str(tmp_path / "data")}
        files = _files(env, args)  # generates the dataset, untimed
        size = sum(Path(f).stat().st_size for f in files)
        title = env.settings().args.title
        cluster = {"workers_data_path": str(tmp_path / "share"), "workers": {"127.0.0.1": cores}}

        def agi(mode: int):
            return lambda: asyncio.run(AGI.run(env, mode=mode, cluster=cluster, use_cache=False, **args))

        out = tmp_path / "baseline"
        out.mkdir()
        results = {
            "baseline_pandas": summary(timed(lambda: baseline_pandas(files, out, title), opts.repeats)),
            "mode0": summary(timed(agi(0), opts.repeats)),
            "mode1": summary(timed(agi(1), opts.repeats)),
            "baseline_dask": summary(timed(lambda: baseline_dask(files, out, title, cores), opts.repeats)),
            "mode4": summary(timed(agi(4), opts.repeats)),
        }
        gpus = local_gpus()
        if gpus and importlib.util.find_spec("cudf") is not None:
            results["mode8"] = summary(timed(agi(8), opts.repeats))
            results["mode12"] = summary(timed(agi(12), opts.repeats))
            skipped = None
        else:
            skipped = ("no NVIDIA GPU on this machine" if not gpus else "cuDF is not installed (pip install cudf-cu12)") + \
                ": modes 8 and 12 not measured"
    med = {name: r["median_s"] for name, r in results.items()}
    ratios = {
        "mode0_vs_pandas_loop": round(med["mode0"] / med["baseline_pandas"], 3),
        "mode1_vs_pandas_loop": round(med["mode1"] / med["baseline_pandas"], 3),
        "mode4_vs_plain_dask": round(med["mode4"] / med["baseline_dask"], 3),
    }
    if "mode8" in med:
        ratios["mode8_vs_mode0"] = round(med["mode8"] / med["mode0"], 3)
    write("dataframe", {
        "dataset": {"files": len(files), "bytes": size, "format": "parquet", "rows": [opts.min_rows, opts.max_rows]},
        "workers": cores, "repeats": opts.repeats, "results": results, "ratios_to_baseline": ratios,
        "gpu": [g.describe() for g in gpus], "skipped": skipped,
        "note": "ratio < 1: agi_core faster than the baseline; mode 4 and plain Dask both start and stop their cluster",
    })


if __name__ == "__main__":
    main()
