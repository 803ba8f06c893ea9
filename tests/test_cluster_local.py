"""Cluster mode (bit 4) on this machine: the embedded default, warm clusters, DAGs across workers."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import subprocess
from pathlib import Path

import pytest

from agi_core import AGI, AgiError, Mode, RunError
from agi_core.base.events import HostStep
from agi_core.cluster import WarmClusters, spec_for
from agi_core.cluster.manage import cluster_down, cluster_status, cluster_up
from agi_core.cluster.tls import FILE_NAMES


def run(env, share, **kwargs):
    return asyncio.run(AGI.run(env, cluster={"workers_data_path": str(share), **kwargs.pop("cluster", {})}, **kwargs))


def spec(env, mode="d", **cluster):
    """The cluster spec the `agi cluster` commands resolve for ``env`` with these overrides."""
    return spec_for(env.settings(cluster=cluster).cluster, Mode.parse(mode), env.name, app_distribution=env.distribution, app_version=env.version())


def dask_processes() -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "distributed.cli.dask_" in line or "dask worker" in line or "dask scheduler" in line]


@pytest.fixture
def warm_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return WarmClusters.default()


@pytest.mark.parametrize("mode", ["d", "dp"])
def test_embedded_default_runs_each_partition_on_its_slot(toy_env, share, mode, warm_dir):
    result = run(toy_env, share, mode=mode, n=8, workers={"127.0.0.1": 2})
    assert result.status == "ok" and result.value == sum(i * i for i in range(8))
    record = json.loads(result.manifest.read_text())
    assert record["executor"] == "dask" and record["cluster"]["warm"] is False
    assert record["cluster"]["scheduler"].startswith("tls://")  # TLS by default (tests/test_cluster_tls.py)
    for part in record["partitions"]:
        assert part["worker"] == part["slot"]  # no fault: every partition ran where the plan put it
        assert "ran_slot" not in part and "retries" not in part
    assert record["reruns"] == 0 and not (result.run_dir / "started").exists()  # its started logs are gone
    assert {p["slot"] for p in record["partitions"]} == {"127.0.0.1-0", "127.0.0.1-1"}
    assert not dask_processes()


def test_dag_dependencies_cross_workers(toy_env, share, warm_dir):
    result = run(toy_env, share, mode="d", n=6, chain=True, workers={"127.0.0.1": 2})
    for i in range(1, 6):
        assert result.results[f"p{i}"]["deps"] == {f"p{i - 1}": (i - 1) ** 2}
    assert len({o.worker for o in result.outcomes}) == 2


def test_failure_and_skipped_dependents_on_the_cluster(toy_env, share, warm_dir):
    with pytest.raises(RunError) as info:
        run(toy_env, share, mode="d", n=5, chain=True, fail_on=[2], workers={"127.0.0.1": 2})
    statuses = {o.id: o.status for o in info.value.result.outcomes}
    assert statuses == {"p0": "ok", "p1": "ok", "p2": "failed", "p3": "skipped", "p4": "skipped"}
    assert "toy failure in partition 2" in str(info.value)


def test_many_tiny_partitions_are_batched(toy_env, share, warm_dir):
    result = run(toy_env, share, mode="d", n=400, workers={"127.0.0.1": 2})
    assert len(result.results) == 400
    assert sorted(o.id for o in result.outcomes) == sorted(f"p{i}" for i in range(400))


def test_warm_cluster_is_attached_and_a_mismatch_is_refused(toy_env, share, warm_dir):
    env = toy_env
    try:
        free_ports = {"scheduler_port": 0, "dashboard_port": None}
        events = []
        status = asyncio.run(cluster_up("toy", spec(env, workers={"127.0.0.1": 2}, dask=free_ports), emit=events.append))
        assert status.running and [w.name for w in status.workers] == ["127.0.0.1-0", "127.0.0.1-1"]
        steps = [(e.host, e.step, e.done) for e in events if isinstance(e, HostStep)]  # the core reports, never prints
        assert ("127.0.0.1", "starting the scheduler", False) in steps and steps[-1] == ("127.0.0.1", "started", True)
        result = run(env, share, mode="d", n=4, cluster={"workers": {"127.0.0.1": 2}})
        record = json.loads(result.manifest.read_text())
        assert record["cluster"]["warm"] is True and record["cluster"]["scheduler"] == status.address
        with pytest.raises(AgiError) as info:
            run(env, share, mode="d", n=4, cluster={"workers": {"127.0.0.1": 1}}, use_cache=False)  # cached: no cluster needed
        assert "does not match" in str(info.value) and "127.0.0.1-1" in str(info.value)
        assert "agi cluster down" in info.value.fix
        with pytest.raises(AgiError, match="already runs"):
            asyncio.run(cluster_up("toy", spec(env, workers={"127.0.0.1": 2})))
    finally:
        stopped = asyncio.run(cluster_down("toy"))
    assert stopped == 3  # scheduler + 2 workers
    assert not asyncio.run(cluster_status("toy")).running
    assert not dask_processes()


def test_a_warm_cluster_refuses_strangers_and_keeps_its_credentials_private(toy_env, share, warm_dir, tmp_path):
    """`agi cluster up` with the default settings: its own CA, on the manager and on the host
    (0700 folders, 0600 files); runs attach with them; strangers are refused; `down` deletes them."""
    from agi_core.cluster.client import open_client
    from agi_core.cluster.launched import LaunchedCluster
    from tests.strangers import assert_refused, attempts, run_as

    cluster_spec = spec(toy_env, workers={"127.0.0.1": 2}, dask={"scheduler_port": 0, "dashboard_port": None})
    manager, host = tmp_path / "state" / "agi_core" / "tls" / "toy", Path(os.path.expanduser(cluster_spec.root)) / "tls" / "toy"
    try:
        status = asyncio.run(cluster_up("toy", cluster_spec))
        assert status.running and status.address.startswith("tls://") and not status.warnings
        for folder in (manager, host):
            assert folder.stat().st_mode & 0o777 == 0o700
            assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == dict.fromkeys(FILE_NAMES, 0o600)
        result = run(toy_env, share, mode="d", n=4, cluster={"workers": {"127.0.0.1": 2}})
        assert result.value == 14 and json.loads(result.manifest.read_text())["cluster"]["scheduler"] == status.address

        async def owner_and_strangers() -> tuple[str, dict[str, str]]:
            attached = LaunchedCluster.attach(cluster_spec, warm_dir.load("toy"))  # as a later process finds it
            client = await open_client(status.address, security=attached.security())
            try:
                return await run_as(client), await attempts(status.address, owner=client)
            finally:
                await client.close()

        owner, strangers = asyncio.run(owner_and_strangers())
        assert owner == getpass.getuser()
        assert_refused(strangers)
    finally:
        asyncio.run(cluster_down("toy"))
    assert not manager.exists() and not host.exists()


def test_ctrl_c_stops_the_cluster_and_writes_the_record(share, tmp_path):
    import signal
    import sys
    import time

    from tests.conftest import ROOT, TEST_APPS

    env = {**__import__("os").environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agi_core.cli", "--apps-path", str(TEST_APPS), "run", "toy", "--mode", "d", "--set", "n=40",
         "--set", "sleep=0.5", "--set", "write_files=true", "--set", f'cluster.workers_data_path="{share}"'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list(share.glob("runs/toy/*/out/part-*.txt"))) < 2:
        time.sleep(0.05)
    assert list(share.glob("runs/toy/*/out/part-*.txt")), "the run never started"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    [manifest] = share.glob("runs/toy/*/manifest.json")
    record = json.loads(manifest.read_text())
    assert record["status"] == "interrupted" and record["executor"] == "dask"
    workers = {int(path.read_text().split()[1]) for path in share.glob("runs/toy/*/out/part-*.txt")}
    time.sleep(0.5)
    assert not dask_processes()
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "worker processes survived Ctrl-C"


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_scheduler_and_workers(toy_env, share, warm_dir):
    cluster = {"scheduler": "::1", "workers": {"::1": 2}, "dask": {"scheduler_port": 0, "dashboard_port": None}}
    result = run(toy_env, share, mode="d", n=4, cluster=cluster)  # embedded: in this process
    record = json.loads(result.manifest.read_text())
    assert record["cluster"]["scheduler"].startswith("tls://[::1]:")
    assert {p["worker"] for p in record["partitions"]} == {"::1-0", "::1-1"}
    try:  # launched: detached processes given `--host [::1]`
        status = asyncio.run(cluster_up("toy", spec(toy_env, **cluster)))
        assert status.address.startswith("tls://[::1]:") and [w.name for w in status.workers] == ["::1-0", "::1-1"]
        rerun = run(toy_env, share, mode="d", n=4, cluster=cluster, use_cache=False)  # cached results would need no cluster
        assert json.loads(rerun.manifest.read_text())["cluster"]["warm"] is True
    finally:
        assert asyncio.run(cluster_down("toy")) == 3
    assert not dask_processes()


def _listening(pids: set[int]) -> set[tuple[str, int]]:
    """The (ip, port) TCP sockets that ``pids`` and their descendants listen on."""
    import psutil

    tree = set(pids)
    for pid in pids:
        try:
            tree |= {child.pid for child in psutil.Process(pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
    return {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.pid in tree}


def test_a_local_clusters_http_ports_listen_on_loopback_only(toy_env, share, warm_dir):
    # Dask serves /info, /health and worker logs over HTTP: on 0.0.0.0 that is anyone on the network.
    try:  # launched (warm): scheduler and workers as detached processes
        status = asyncio.run(cluster_up("toy", spec(toy_env, workers={"127.0.0.1": 2}, dask={"scheduler_port": 0})))
        sockets = _listening({p.pid for p in status.processes})
    finally:
        asyncio.run(cluster_down("toy"))
    # scheduler (tcp + http) and per worker: nanny-less worker tcp + http
    assert len(sockets) >= 4 and {ip for ip, _ in sockets} == {"127.0.0.1"}, sockets

    seen: list[set[tuple[str, int]]] = []

    def on_event(event):
        if event.kind == "cluster_ready":  # embedded: the scheduler in this process, nannies and workers its children
            seen.append(_listening({os.getpid()}))

    run(toy_env, share, mode="d", n=4, workers={"127.0.0.1": 2}, on_event=on_event)
    assert seen and len(seen[0]) >= 4 and {ip for ip, _ in seen[0]} == {"127.0.0.1"}, seen
