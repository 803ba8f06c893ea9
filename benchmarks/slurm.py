"""The Slurm backend against hand-written dask-jobqueue, on a single-node Slurm of this machine.

(a) cold: one `AGI.run` in mode 4 with ``backend = "slurm"`` (2 jobs submitted, 200 partitions
    of 20 ms, jobs cancelled at the end) vs the plain dask-jobqueue script a user would write:
    ``SLURMCluster`` + ``scale(jobs=2)`` + ``wait_for_workers`` + ``client.map`` + close;
(b) warm: 2,000 no-op partitions with `AGI.run` on a warm Slurm cluster (`AGI.cluster_up`) vs
    plain ``client.map`` of the same function on the same workers.
Same jobs (1 core, 1 GB, this test environment's Python), same work, same run; medians compared.
Needs root and Debian's slurmctld, slurmd, slurm-client and munge (`agi_testkit.slurm`).

Usage: sudo python benchmarks/slurm.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, warm_security, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agi_core import AGI, AgiEnv  # noqa: E402
from agi_testkit.slurm import PARTITION, SingleNodeSlurm, slurm_available  # noqa: E402

JOBS, MEMORY, SLEEP, N_COLD, N_WARM = 2, "1GB", 0.02, 200, 2000


def sleepy(i: int) -> int:
    time.sleep(SLEEP)
    return i * i


def square(i: int) -> int:
    return i * i


def settings(folder: Path) -> dict:
    return {"backend": "slurm", "workers_data_path": str(folder / "share"), "install": {"root": str(folder / "agi")},
            "dask": {"scheduler_port": 0, "dashboard_port": None},
            "slurm": {"jobs": JOBS, "memory": MEMORY, "partition": PARTITION, "python": sys.executable,
                      "log_directory": str(folder / "logs")}}


async def agi_cold(toy: AgiEnv, folder: Path) -> float:
    start = time.perf_counter()
    await AGI.run(toy, mode="d", cluster=settings(folder), use_cache=False, n=N_COLD, sleep=SLEEP)
    return time.perf_counter() - start


async def plain_cold(folder: Path) -> float:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    start = time.perf_counter()
    async with SLURMCluster(cores=1, processes=1, memory=MEMORY, queue=PARTITION, python=sys.executable, asynchronous=True,
                            log_directory=str(folder / "plain-logs"), scheduler_options={"dashboard": False}) as cluster:
        cluster.scale(jobs=JOBS)
        async with Client(cluster, asynchronous=True) as client:
            await client.wait_for_workers(JOBS)
            await client.gather(client.map(sleepy, range(N_COLD), pure=False))
    return time.perf_counter() - start


async def warm(toy: AgiEnv, folder: Path, repeats: int) -> tuple[list[float], list[float]]:
    from distributed import Client

    status = await AGI.cluster_up(toy, mode="d", cluster=settings(folder))
    try:
        await AGI.run(toy, mode="d", cluster=settings(folder), use_cache=False, n=10)  # warm the workers' imports
        agi, plain = [], []
        async with Client(status.address, asynchronous=True, security=warm_security(toy.name)) as client:
            for _ in range(repeats):
                start = time.perf_counter()
                await AGI.run(toy, mode="d", cluster=settings(folder), use_cache=False, n=N_WARM)
                agi.append(time.perf_counter() - start)
                start = time.perf_counter()
                await client.gather(client.map(square, range(N_WARM), pure=False))
                plain.append(time.perf_counter() - start)
        return agi, plain
    finally:
        await AGI.cluster_down(toy, cluster=settings(folder))


def ratio(ours: list[float], theirs: list[float]) -> float:
    return round(statistics.median(ours) / statistics.median(theirs), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    reason = slurm_available()
    if reason:
        sys.exit(f"benchmarks/slurm.py: {reason}")
    toy = AgiEnv(app="toy", apps_path=ROOT / "tests" / "apps")
    with SingleNodeSlurm.up() as slurm, tempfile.TemporaryDirectory(prefix="agi-bench-slurm-") as tmp:
        os.environ.update(slurm.env())
        os.environ["XDG_STATE_HOME"] = str(Path(tmp) / "state")  # the warm cluster's record stays in here
        folder = Path(tmp)
        cold_agi, cold_plain = [], []
        for _ in range(options.repeats):  # alternated, so load from elsewhere falls on both
            cold_agi.append(asyncio.run(agi_cold(toy, folder)))
            cold_plain.append(asyncio.run(plain_cold(folder)))
        warm_agi, warm_plain = asyncio.run(warm(toy, folder, options.repeats))
        left = slurm.queue()
    write("slurm", {
        "setup": f"single-node Slurm on this machine, {JOBS} jobs of 1 core and {MEMORY}; the test environment's Python",
        "cold_200x20ms": {"note": "the toy app weighs partition i as i+1 while each sleeps the same 20 ms: agi's static plan "
                                  "is mis-weighted here (work stealing off), Dask's map balances as it goes",
                          "agi": summary(cold_agi), "plain_dask_jobqueue": summary(cold_plain),
                          "ratio_agi_over_plain": ratio(cold_agi, cold_plain)},
        "warm_2000_noop": {"agi": summary(warm_agi), "plain_client_map": summary(warm_plain),
                           "ratio_agi_over_plain": ratio(warm_agi, warm_plain)},
        "jobs_left_after": left,
    })


if __name__ == "__main__":
    main()
