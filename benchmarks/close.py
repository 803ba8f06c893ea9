"""What closing a cluster costs beyond Dask's own close (issue 23: ≤ 0.3 s).

In one process, alternated so that a machine's drifting load hits every kind alike:

- Dask's own: a `distributed.LocalCluster` of 2 worker processes (nannies), started, a client
  connected and closed, then ``await cluster.close()`` timed;
- agi's launched cluster on this machine (what a run from the app's own environment starts:
  `SshCluster` with ``local_python``, i.e. `LaunchedCluster` with detached, tethered processes),
  2 workers, the same client round, then ``await backend.close()`` timed until every process
  (and its tether) is gone;
- agi's embedded cluster (`InProcessCluster`, the default on this machine), the same way.

Plain TCP for all (``tls = false``): the close path is what is measured, not credentials.
Writes ``results/close.json``: per kind the close times (median, min, all) and the excess of each
agi kind over Dask's median.

Usage: python benchmarks/close.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agi_core import Mode  # noqa: E402
from agi_core.cluster import backend_class, connect_client, spec_for  # noqa: E402
from agi_core.settings import ClusterSettings  # noqa: E402

WORKERS = 2


async def dask_close() -> float:
    from distributed import Client, LocalCluster

    cluster = await LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, asynchronous=True,
                                 dashboard_address=None, silence_logs=40)
    client = await Client(cluster, asynchronous=True)
    await client.wait_for_workers(WORKERS)
    await client.close()
    start = time.perf_counter()
    await cluster.close()
    return time.perf_counter() - start


async def agi_close(root: Path, *, launched: bool) -> float:
    cluster = ClusterSettings.model_validate({"workers": {"127.0.0.1": WORKERS}, "tls": False,
                                              "install": {"root": str(root)}, "dask": {"dashboard_port": None}})
    spec = spec_for(cluster, Mode.CLUSTER, "closebench", local_python=Path(sys.executable) if launched else None)
    backend = backend_class(spec.backend)(spec)
    await backend.start()
    try:
        client = await connect_client(backend, spec)
        await client.close()
    finally:
        start = time.perf_counter()
        await backend.close()
        elapsed = time.perf_counter() - start
    return elapsed


async def main(repeats: int) -> None:
    times: dict[str, list[float]] = {"dask_local_cluster": [], "agi_launched": [], "agi_inprocess": []}
    with tempfile.TemporaryDirectory(prefix="agi-close-") as folder:
        await agi_close(Path(folder), launched=True)  # warm-up: imports, first process starts
        for _ in range(repeats):
            times["dask_local_cluster"].append(await dask_close())
            times["agi_launched"].append(await agi_close(Path(folder), launched=True))
            times["agi_inprocess"].append(await agi_close(Path(folder), launched=False))
    dask = statistics.median(times["dask_local_cluster"])
    write("close", {
        "workers": WORKERS, "repeats": repeats,
        **{kind: summary(values) for kind, values in times.items()},
        "excess_over_dask_s": {kind: round(statistics.median(values) - dask, 4) for kind, values in times.items()
                               if kind != "dask_local_cluster"},
        "goal": "closing costs <= 0.3 s beyond Dask's own (issue 23)",
    })


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    asyncio.run(main(parser.parse_args().repeats))
