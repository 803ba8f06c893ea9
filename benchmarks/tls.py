"""The cost of authenticated clusters: TLS (the default) against plain TCP (``[cluster] tls = false``).

(a) the whole `agi run` process in mode 4 (d) on the embedded default: cluster started with its
    own fresh credentials, one tiny partition, stopped; TLS vs plain, alternated, with the
    plain-Dask script of benchmarks/cluster.py as the baseline;
(b) 2,000 no-op partitions (`AGI.run`) on a warm local cluster of 2 workers, TLS vs plain, and a
    plain `client.map` of the same function on each cluster (Dask's own TLS cost); the clusters
    alternate (TLS, plain, TLS, plain) so that a machine's drifting load hits both alike;
(c) what a cluster start spends on credentials: importing `cryptography` and making a CA and a
    certificate (EC P-256) in a fresh interpreter.

Each measure is wall-clock seconds and CPU seconds (user + system of every process involved: the
`agi` process and its workers in (a), the manager and the warm cluster's process trees in (b)).
On a machine shared with other work, CPU seconds are the steadier of the two.

The goal (issue 21): ratios TLS / plain ≤ 1.1.

Usage: python benchmarks/tls.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summary, warm_security, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cluster import PLAIN_DASK, plain_map  # noqa: E402

from agi_core import AGI, AgiEnv  # noqa: E402

CREDENTIALS = """
import json, time
import distributed  # loaded anyway by the time a cluster starts
from agi_core.cluster import tls
start = time.perf_counter()
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
imported = time.perf_counter() - start
start = time.perf_counter()
credentials = tls.make_credentials(["127.0.0.1"])
first = time.perf_counter() - start
times = []
for _ in range(21):
    start = time.perf_counter()
    tls.make_credentials(["127.0.0.1"])
    times.append(time.perf_counter() - start)
security = credentials.security()
start = time.perf_counter()
for _ in range(10):
    security.get_connection_args("client")
context = (time.perf_counter() - start) / 10
print(json.dumps({"import_cryptography_s": imported, "first_make_s": first, "make_s": sorted(times)[10],
                  "tls_context_s": context}))
"""


def square(i: int) -> dict:  # here, not imported: the workers get it by value (this is __main__)
    return {"square": i * i}


def ratio(a: list[float], b: list[float]) -> float:
    return round(statistics.median(a) / statistics.median(b), 3)


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds so far of these processes and all their descendants (gone ones are skipped)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in (root, *root.children(recursive=True)):
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def noop_runs(toy: AgiEnv, share: str, tls: bool, repeats: int) -> dict[str, list[float]]:
    """Wall and CPU seconds of AGI.run of 2,000 no-op partitions, and of a plain client.map of
    2,000, on one warm cluster."""
    from agi_core.cluster import WarmClusters

    cluster = {"workers": {"127.0.0.1": 2}, "dask": {"scheduler_port": 0, "dashboard_port": None}, "tls": tls}
    status = await AGI.cluster_up(toy, cluster=cluster)
    run_cluster = {"workers_data_path": share, "workers": {"127.0.0.1": 2}, "tls": tls}
    pids = [process["pid"] for process in WarmClusters.default().load(toy.name)["processes"]]
    out: dict[str, list[float]] = {"agi": [], "agi_cpu": [], "map": [], "map_cpu": []}

    async def measure(name: str, work) -> None:
        cpu, start = time.process_time() + tree_cpu(pids), time.perf_counter()
        await work()
        out[name].append(time.perf_counter() - start)
        out[f"{name}_cpu"].append(time.process_time() + tree_cpu(pids) - cpu)

    try:
        security = warm_security(toy.name)
        await AGI.run(toy, mode="d", cluster=run_cluster, use_cache=False, n=10)  # warm the workers' imports
        for _ in range(repeats):
            await measure("agi", lambda: AGI.run(toy, mode="d", cluster=run_cluster, use_cache=False, n=2000))
            await measure("map", lambda: plain_map(status.address, square, 2000, security=security))
    finally:
        await AGI.cluster_down(toy, cluster={"tls": tls})
    return out


def whole_process(share: str, repeats: int) -> dict[str, list[float]]:
    base = [sys.executable, "-m", "agi_core.cli", "--apps-path", str(ROOT / "tests" / "apps"), "run", "toy", "--mode", "d",
            "--no-progress", "--no-cache", "--set", "n=1", "--set", f'cluster.workers_data_path="{share}"',
            "--set", 'cluster.workers."127.0.0.1"=2']
    commands = {"agi_tls": base, "agi_plain_tcp": [*base, "--set", "cluster.tls=false"],
                "plain_dask_script": [sys.executable, "-c", PLAIN_DASK]}
    times: dict[str, list[float]] = {key: [] for name in commands for key in (name, f"{name}_cpu")}
    for i in range(repeats + 1):  # the first round warms the file cache and is left out
        order = list(commands.items())
        for name, command in order if i % 2 else reversed(order):
            cpu, start = children_cpu(), time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            if i:
                times[name].append(time.perf_counter() - start)
                times[f"{name}_cpu"].append(children_cpu() - cpu)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_STATE_HOME"] = f"{tmp}/state"  # private warm-cluster state and credentials
        share = f"{tmp}/share"
        toy = AgiEnv(app="toy", apps_path=ROOT / "tests" / "apps")
        whole = whole_process(share, options.repeats)
        noop: dict[bool, dict[str, list[float]]] = {True: {}, False: {}}
        half = max(1, options.repeats // 2)
        for tls in (True, False, True, False):  # alternated: drifting load hits both
            for name, values in asyncio.run(noop_runs(toy, share, tls, half)).items():
                noop[tls].setdefault(name, []).extend(values)
    made = json.loads(subprocess.run([sys.executable, "-c", CREDENTIALS], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    tls, tcp = noop[True], noop[False]
    write("tls", {
        "workers": 2,
        "load_average_at_end": os.getloadavg(),
        "a_whole_process_mode4": {
            **{name: summary(values) for name, values in whole.items()},
            "ratio_tls_over_plain_tcp": ratio(whole["agi_tls"], whole["agi_plain_tcp"]),
            "ratio_tls_over_plain_tcp_cpu": ratio(whole["agi_tls_cpu"], whole["agi_plain_tcp_cpu"]),
            "ratio_tls_over_plain_dask": ratio(whole["agi_tls"], whole["plain_dask_script"]),
            "ratio_plain_tcp_over_plain_dask": ratio(whole["agi_plain_tcp"], whole["plain_dask_script"]),
        },
        "b_noop_2000_warm": {
            "agi_tls": summary(tls["agi"]), "agi_plain_tcp": summary(tcp["agi"]),
            "agi_tls_cpu": summary(tls["agi_cpu"]), "agi_plain_tcp_cpu": summary(tcp["agi_cpu"]),
            "client_map_tls": summary(tls["map"]), "client_map_plain_tcp": summary(tcp["map"]),
            "client_map_tls_cpu": summary(tls["map_cpu"]), "client_map_plain_tcp_cpu": summary(tcp["map_cpu"]),
            "ratio_tls_over_plain_tcp": ratio(tls["agi"], tcp["agi"]),
            "ratio_tls_over_plain_tcp_cpu": ratio(tls["agi_cpu"], tcp["agi_cpu"]),
            "ratio_client_map_tls_over_plain_tcp": ratio(tls["map"], tcp["map"]),
            "ratio_client_map_tls_over_plain_tcp_cpu": ratio(tls["map_cpu"], tcp["map_cpu"]),
        },
        "c_credentials": {key: round(value, 4) for key, value in made.items()},
    })


if __name__ == "__main__":
    main()
