"""Cluster mode across the rig's 3 hosts: modes 4 and 5, DAGs, and faults in the middle of a run."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings

import pytest

from agi_core import AGI, AgiEnv, AgiError, Mode
from agi_core.cluster import WarmClusters, spec_for
from tests.conftest import TEST_APPS

pytestmark = pytest.mark.rig


def cluster_for(rig, share, **dask):
    return {
        "ssh": {"user": "root", "key": str(rig.client_key), "known_hosts": str(rig.known_hosts), "connect_timeout": 3},
        "workers": {h.ip: 1 for h in rig.hosts},
        "scheduler": f"{rig.hosts[0].ip}:8786",
        "workers_data_path": str(share),
        "dask": {"dashboard_port": None, "tcp_timeout": 12, "connect_timeout": 5, "start_timeout": 30, **dask},
    }


@pytest.fixture(scope="module")
def toy_installed(rig):
    """The toy app installed on every rig host (once for this module)."""
    rig.reset()
    env = AgiEnv(app="toy", apps_path=TEST_APPS)
    report = asyncio.run(AGI.install(env, cluster=cluster_for(rig, "/tmp")))
    assert all(h.ok for h in report.hosts)
    return env


@pytest.fixture
def env(toy_installed, rig_hosts, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # no warm cluster from elsewhere
    yield toy_installed
    for host in rig_hosts.hosts:  # nothing may be left running after any test
        if host.is_running():
            left = host.run("pgrep -af 'distributed[.]cli' || true").stdout.strip()
            assert not left, f"{host.name} still runs: {left}"


def run(env, rig, share, **kwargs):
    dask = kwargs.pop("dask", {})
    return asyncio.run(AGI.run(env, cluster=cluster_for(rig, share, **dask), **kwargs))


def check_every_partition_once(result, n):
    record = json.loads(result.manifest.read_text())
    ids = [p["id"] for p in record["partitions"]]
    assert sorted(ids) == sorted(f"p{i}" for i in range(n)) and len(set(ids)) == n
    assert all(p["status"] == "ok" and p["worker"] for p in record["partitions"])
    assert {pid: r["square"] for pid, r in result.results.items()} == {f"p{i}": i * i for i in range(n)}
    return record


@pytest.mark.parametrize("mode", ["d", "dp"])
def test_modes_4_and_5_across_hosts(env, rig_hosts, tmp_path, mode):
    result = run(env, rig_hosts, tmp_path, mode=mode, n=9)
    record = check_every_partition_once(result, 9)
    assert {p["host"] for p in record["partitions"]} == {"h1", "h2", "h3"}  # really ran on the hosts
    assert all(p["worker"] == p["slot"] for p in record["partitions"])


def test_dag_across_hosts(env, rig_hosts, tmp_path):
    result = run(env, rig_hosts, tmp_path, mode="d", n=6, chain=True)
    for i in range(1, 6):
        assert result.results[f"p{i}"]["deps"] == {f"p{i - 1}": (i - 1) ** 2}
    assert len({o.host for o in result.outcomes}) >= 2


def _fault_during_run(env, rig, share, fault, *, n=24, sleep=0.4, after=3, **dask):
    """Run, and inject ``fault`` once ``after`` partitions have finished (they write files to the share)."""
    stop = threading.Event()

    def inject() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            if len(list(share.glob("runs/toy/*/out/part-*.txt"))) >= after:
                fault()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=inject, daemon=True)
    thread.start()
    try:
        return run(env, rig, share, mode="d", n=n, sleep=sleep, write_files=True, dask=dask)
    finally:
        stop.set()
        thread.join()


def _moved(record, lost_host_ip):
    planned_there = [p for p in record["partitions"] if p["slot"].startswith(lost_host_ip)]
    return planned_there, [p for p in planned_there if p["worker"] != p["slot"]]


def test_killed_worker_process_group(env, rig_hosts, tmp_path):
    h3 = rig_hosts.hosts[2]
    kill = lambda: h3.run(["bash", "-c", "kill -KILL -- -$(pgrep -f 'distributed[.]cli[.]dask_worker' | head -1)"])  # noqa: E731
    result = _fault_during_run(env, rig_hosts, tmp_path, kill)
    record = check_every_partition_once(result, 24)
    planned, moved = _moved(record, h3.ip)
    assert planned and moved  # h3's unfinished partitions ran on the other workers
    assert all(p["host"] in ("h1", "h2") for p in moved)
    # the one running when its worker died says so (it may have run again on h3, under a fresh
    # worker its nanny started); those that moved without having started there count no retry
    assert any(p.get("retries", 0) >= 1 for p in planned)


def test_crashed_host(env, rig_hosts, tmp_path):
    h3 = rig_hosts.hosts[2]
    result = _fault_during_run(env, rig_hosts, tmp_path, h3.crash)
    record = check_every_partition_once(result, 24)
    _, moved = _moved(record, h3.ip)
    assert moved and all(p["host"] != "h3" for p in moved)


def test_cut_link(env, rig_hosts, tmp_path):
    h3 = rig_hosts.hosts[2]
    result = _fault_during_run(env, rig_hosts, tmp_path, h3.cut_link, n=12, sleep=0.3)
    record = check_every_partition_once(result, 12)
    _, moved = _moved(record, h3.ip)
    assert moved


def test_killed_scheduler_is_a_clear_error_not_a_hang(env, rig_hosts, tmp_path):
    h1 = rig_hosts.hosts[0]
    kill = lambda: h1.run(["bash", "-c", "kill -KILL -- -$(pgrep -f 'distributed[.]cli[.]dask_scheduler' | head -1)"])  # noqa: E731
    start = time.monotonic()
    with pytest.raises(AgiError) as info:
        _fault_during_run(env, rig_hosts, tmp_path, kill, n=30, sleep=0.5)
    assert time.monotonic() - start < 90
    assert "scheduler" in str(info.value).lower()
    records = list(tmp_path.glob("runs/toy/*/manifest.json"))
    assert json.loads(records[0].read_text())["status"] == "failed"


def test_warm_cluster_on_the_rig(env, rig_hosts, tmp_path):
    """Also: a host of the network (this machine, reaching h1's address) cannot use its port
    without the cluster's certificate; each host keeps the credentials private until `down`."""
    from agi_core.cluster.client import open_client
    from agi_core.cluster.launched import LaunchedCluster
    from agi_core.cluster.manage import cluster_down, cluster_up
    from tests.strangers import assert_refused, attempts, run_as

    cluster = cluster_for(rig_hosts, tmp_path)
    folder = "/root/.agi/tls/toy"
    try:
        spec = spec_for(env.settings(cluster=cluster).cluster, Mode.CLUSTER, "toy", app_distribution=env.distribution, app_version=env.version())
        status = asyncio.run(cluster_up("toy", spec))
        assert sorted(w.name for w in status.workers) == sorted(f"{h.ip}-0" for h in rig_hosts.hosts)
        assert status.address.startswith(f"tls://{rig_hosts.hosts[0].ip}:")
        result = asyncio.run(AGI.run(env, mode="d", n=6, cluster=cluster))
        assert json.loads(result.manifest.read_text())["cluster"]["warm"] is True
        for host in rig_hosts.hosts:
            modes = host.run(f"stat -c %a {folder} {folder}/ca.pem {folder}/cluster.pem {folder}/cluster.key").stdout.split()
            assert modes == ["700", "600", "600", "600"], (host.name, modes)

        async def owner_and_strangers() -> tuple[str, dict[str, str]]:
            attached = LaunchedCluster.attach(spec, WarmClusters.default().load("toy"))  # as a later process finds it
            client = await open_client(status.address, security=attached.security())
            try:
                return await run_as(client), await attempts(status.address, owner=client)
            finally:
                await client.close()

        owner, strangers = asyncio.run(owner_and_strangers())
        assert owner == "root"  # the control: the cluster's own certificate does get in
        assert_refused(strangers)
    finally:
        asyncio.run(cluster_down("toy"))
    assert WarmClusters.default().load("toy") is None
    assert all(host.run(f"test -e {folder}").returncode == 1 for host in rig_hosts.hosts)


def test_workers_that_never_join_are_named_with_their_log(env, rig_hosts, tmp_path):
    h3 = rig_hosts.hosts[2]
    h3.run("mv /root/.agi/venvs/toy /root/.agi/venvs/toy.hidden")
    try:
        with pytest.raises(AgiError) as info:
            run(env, rig_hosts, tmp_path, mode="d", n=3, dask={"start_timeout": 8})
    finally:
        h3.run("mv /root/.agi/venvs/toy.hidden /root/.agi/venvs/toy")
    message = str(info.value)
    assert "did not join" in message and h3.ip in message and f"{h3.ip}-0" in message
    assert "No such file or directory" in message  # the end of that worker's log


def test_tls_across_hosts_by_default_and_plain_tcp_when_asked(env, rig_hosts, tmp_path):
    cluster = cluster_for(rig_hosts, tmp_path)

    def credentials() -> list[set[str]]:  # runs' own credentials on each host (a host cut off mid-run keeps its)
        return [set(host.run("ls /root/.agi/tls 2>/dev/null | grep '^toy-' || true").stdout.split()) for host in rig_hosts.hosts]

    before = credentials()
    result = asyncio.run(AGI.run(env, mode="d", n=6, cluster=cluster))
    record = check_every_partition_once(result, 6)
    assert record["cluster"]["scheduler"].startswith("tls://")
    assert credentials() == before  # this run's went with its cluster
    plain = asyncio.run(AGI.run(env, mode="d", n=6, cluster={**cluster, "tls": False}, use_cache=False))
    assert check_every_partition_once(plain, 6)["cluster"]["scheduler"].startswith("tcp://")


def test_a_run_across_hosts_prints_no_dask_version_tables(env, rig_hosts, tmp_path):
    """The rig's hosts run Debian's Python 3.11.2, this manager another 3.11: Dask's warning
    about that patch level is silenced; agi's own check finds nothing wrong."""
    import platform

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(env, rig_hosts, tmp_path, mode="d", n=6)
    check_every_partition_once(result, 6)
    assert not [w for w in caught if "Mismatched versions" in str(w.message)]
    facts = worker_facts_on_the_rig(env, rig_hosts, tmp_path)
    assert sorted(facts) == sorted(f"{h.ip}-0" for h in rig_hosts.hosts)
    for name, fact in facts.items():
        assert fact.host == name.removesuffix("-0") and fact.app == "0.0.1"  # installed by `agi install`
        assert fact.python.split(".")[:2] == platform.python_version().split(".")[:2] and fact.cores >= 1


def test_a_real_version_mismatch_names_the_host(env, rig_hosts, tmp_path):
    h2 = rig_hosts.hosts[1]
    metadata = "/root/.agi/venvs/toy/lib/python3.11/site-packages/toy-0.0.1.dist-info/METADATA"
    h2.run(f"sed -i 's/^Version: 0.0.1$/Version: 0.0.0/' {metadata}")
    try:
        with pytest.raises(AgiError) as info:
            run(env, rig_hosts, tmp_path, mode="d", n=3)
    finally:
        h2.run(f"sed -i 's/^Version: 0.0.0$/Version: 0.0.1/' {metadata}")
    message = str(info.value)
    assert f"toy: 0.0.1 on this manager, 0.0.0 on {h2.ip} (worker {h2.ip}-0)" in message
    assert "agi install toy" in info.value.fix


def worker_facts_on_the_rig(env, rig, share):
    import dask

    from agi_core.cluster import dask_config, open_cluster, worker_facts

    spec = spec_for(env.settings(cluster=cluster_for(rig, share)).cluster, Mode.CLUSTER, "toy", app_distribution=env.distribution, app_version=env.version())

    async def facts():
        with dask.config.set(dask_config(spec)):
            async with open_cluster(spec) as handle:
                return await worker_facts(handle.client, "toy")

    return asyncio.run(facts())


MANAGER = """
import asyncio, json, sys
from agi_core import AGI, AgiEnv
asyncio.run(AGI.run(AgiEnv(app="toy", apps_path=sys.argv[1]), mode="d", n=24, sleep=0.5, write_files=True,
                    cluster=json.loads(sys.argv[2])))
"""


def test_a_run_cluster_dies_with_its_sigkilled_manager(env, rig_hosts, tmp_path):
    """Processes a run launched on hosts are tethered to its manager (warm clusters are not)."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    share = tmp_path / "share"
    manager = subprocess.Popen([sys.executable, "-c", MANAGER, str(TEST_APPS), json.dumps(cluster_for(rig_hosts, share))],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(list(share.glob("runs/toy/*/out/part-*.txt"))) < 2:
            time.sleep(0.1)
        assert list(share.glob("runs/toy/*/out/part-*.txt")), "the run never started"
        running = [h.name for h in rig_hosts.hosts if h.run("pgrep -f 'distributed[.]cli' || true").stdout.strip()]
        assert len(running) == 3  # scheduler and workers up on every host
        os.kill(manager.pid, signal.SIGKILL)
        manager.wait(10)
    finally:
        if manager.poll() is None:
            manager.kill()
    deadline = time.monotonic() + 20
    left = ["?"]
    while time.monotonic() < deadline and left:
        left = [h.name for h in rig_hosts.hosts if h.run("pgrep -f 'distributed[.]cli' || true").stdout.strip()]
        time.sleep(0.2)
    assert not left, f"processes of the killed manager's cluster still run on {left}"


def test_the_port_matrix_is_all_a_run_needs(env, rig_hosts, tmp_path):
    """Each host drops every inbound connection except those `agi cluster ports --firewall nft`
    lists for it (from the manager's address on the rig's bridge): a run in mode 4 completes.
    Controls: a connection the matrix does not list is dropped, and workers on unpinned ports
    fail the run with an error that says the scheduler cannot reach them."""
    import shutil

    from agi_core.cluster.ports import firewall_rules, port_rules
    from agi_core.settings import ClusterSettings

    if shutil.which("nft") is None:
        pytest.skip("needs nftables' nft (apt-get install nftables)")
    share = tmp_path / "share"
    pinned = {"worker_ports": "9000:9099", "nanny_ports": "9100:9199"}
    rules = firewall_rules(port_rules(ClusterSettings.model_validate(cluster_for(rig_hosts, share, **pinned))), style="nft",
                           manager=rig_hosts.bridge_ip)
    assert set(rules) == {h.ip for h in rig_hosts.hosts}
    try:
        for host in rig_hosts.hosts:
            script = tmp_path / f"{host.name}.nft"
            script.write_text("\n".join([
                "add table inet filter",
                "add chain inet filter input { type filter hook input priority 0; policy drop; }",
                "add rule inet filter input iif lo accept",
                "add rule inet filter input ct state established,related accept",
                *(line.removeprefix("nft ") for line in rules[host.ip]), ""]))
            applied = host.run(["nft", "-f", str(script)])
            assert applied.returncode == 0, applied.stderr
        h1, h2 = rig_hosts.hosts[:2]
        probe = h2.run(f"timeout 2 bash -c '</dev/tcp/{h1.ip}/22'")  # SSH is open to the manager only
        assert probe.returncode == 124, "h2 reached h1's SSH port: the firewall is not in effect"
        with pytest.raises(AgiError, match=r"the scheduler cannot reach 2 worker\(s\) that joined it") as info:
            run(env, rig_hosts, share, mode="d", n=6)  # ports not pinned: outside the rules
        assert "worker_ports" in (info.value.fix or "")
        result = run(env, rig_hosts, share, mode="d", n=6, dask=pinned)
        check_every_partition_once(result, 6)
        assert len({p["host"] for p in json.loads(result.manifest.read_text())["partitions"]}) == 3
    finally:
        for host in rig_hosts.hosts:
            host.run(["nft", "flush", "ruleset"])


def test_with_min_workers_a_host_whose_worker_never_joins_is_recorded_and_the_run_completes(env, rig_hosts, tmp_path):
    """Issue 24: the run starts with the 2 workers that joined; the third's partitions run there,
    and the record names the worker that never joined with the end of its log."""
    h3 = rig_hosts.hosts[2]
    h3.run("mv /root/.agi/venvs/toy /root/.agi/venvs/toy.hidden")
    try:
        cluster = {**cluster_for(rig_hosts, tmp_path, start_timeout=8), "min_workers": 2}
        result = asyncio.run(AGI.run(env, cluster=cluster, mode="d", n=12))
    finally:
        h3.run("mv /root/.agi/venvs/toy.hidden /root/.agi/venvs/toy")
    record = check_every_partition_once(result, 12)
    assert record["cluster"]["never_joined"] == [f"{h3.ip}-0"]
    assert "No such file or directory" in record["cluster"]["never_joined_report"]  # the end of its log
    planned_there = [p for p in record["partitions"] if p["slot"] == f"{h3.ip}-0"]
    assert planned_there and all(p["ran_slot"] and p["host"] != "h3" for p in planned_there)


def _run_in_thread(env, cluster, events, **args):
    box: dict = {}

    def go() -> None:
        try:
            box["result"] = asyncio.run(AGI.run(env, cluster=cluster, mode="d", on_event=events.append, **args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, box


def test_a_host_down_at_the_start_is_left_out_and_its_worker_joins_when_it_comes_back(env, rig_hosts, tmp_path):
    """Issue 24 on SSH: with min_workers = 2 the run starts on the two hosts it reaches, tries the
    third again while it runs (`LaunchedCluster.tend`), and once that host is back its worker
    joins late and takes work; every partition runs once."""
    from agi_core.base.events import HostStep, RunStarted

    h3 = rig_hosts.hosts[2]
    h3.crash()  # refuses connections
    events: list = []
    thread, box = _run_in_thread(env, {**cluster_for(rig_hosts, tmp_path), "min_workers": 2}, events, n=40, sleep=0.5)
    deadline = time.time() + 90
    while not any(isinstance(e, RunStarted) for e in events) and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert any(isinstance(e, HostStep) and e.host == h3.ip and e.failed and "unreachable" in e.step for e in events)
    h3.restart()
    thread.join(180)
    assert "error" not in box, box.get("error")
    record = check_every_partition_once(box["result"], 40)
    assert any(isinstance(e, HostStep) and e.host == h3.ip and "reachable again" in e.step for e in events)
    assert [p for p in record["partitions"] if p["host"] == "h3"]  # it joined late and took work
    assert not record["cluster"].get("never_joined")


def test_a_host_down_for_the_whole_run_is_recorded_as_never_joined_with_why(env, rig_hosts, tmp_path):
    h3 = rig_hosts.hosts[2]
    h3.crash()
    events: list = []
    thread, box = _run_in_thread(env, {**cluster_for(rig_hosts, tmp_path, start_timeout=8), "min_workers": 2}, events, n=6)
    thread.join(180)
    assert "error" not in box, box.get("error")
    record = check_every_partition_once(box["result"], 6)
    assert record["cluster"]["never_joined"] == [f"{h3.ip}-0"]
    assert "could not be reached" in record["cluster"]["never_joined_report"]


def test_a_late_worker_with_other_code_is_installed_over_ssh_and_then_joins(env, rig_hosts, tmp_path):
    """Issue 24 item 6 on SSH: with [cluster] install = "auto", a worker that joins late with an
    install of other code is refused until agi installs its host over SSH, then joins and works."""
    from agi_core.base.events import RunStarted

    h3 = rig_hosts.hosts[2]
    fingerprint = "/root/.agi/venvs/toy/.agi-install.json"
    real = json.loads(h3.run(f"cat {fingerprint}").stdout)
    stale = {**real, "agi_hash": "0" * 64}  # what an install of older code says
    h3.run(f"cat > {fingerprint} <<'EOF'\n{json.dumps(stale)}\nEOF")
    try:
        h3.crash()  # down at the start: its worker comes late, with the stale install
        events: list = []
        cluster = {**cluster_for(rig_hosts, tmp_path), "min_workers": 2, "install": "auto"}
        thread, box = _run_in_thread(env, cluster, events, n=80, sleep=0.5)
        deadline = time.time() + 90
        while not any(isinstance(e, RunStarted) for e in events) and thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        h3.restart()
        thread.join(300)
        assert "error" not in box, box.get("error")
        record = check_every_partition_once(box["result"], 80)
        assert json.loads(h3.run(f"cat {fingerprint}").stdout)["agi_hash"] == real["agi_hash"]  # installed again
        assert [p for p in record["partitions"] if p["host"] == "h3"]  # then joined and took work
    finally:
        if h3.is_running():
            h3.run(f"cat > {fingerprint} <<'EOF'\n{json.dumps(real)}\nEOF")
