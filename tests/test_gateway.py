"""The Dask Gateway backend against a real dask-gateway-server (tests/gateway_server.py).

One server for the session (local backend, simple auth, loopback). Its schedulers and workers run
an image without agi_core or the app: every run here needs the environment shipped through Dask
(`env_shipping`), so each test that runs an app proves that too. The app is `ledger` (a work()
that appends a line per call to a file, so what ran twice shows).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv
from agi_core.base.errors import AgiError
from tests.conftest import ROOT, TEST_APPS
from tests.gateway_server import PASSWORD, GatewayServer

PASSWORD_ENV = "AGI_TEST_GATEWAY_PASSWORD"


@pytest.fixture(scope="session")
def gateway_server(tmp_path_factory):
    pytest.importorskip("dask_gateway", reason="the gateway extra (dask-gateway) is not installed")
    try:
        server = GatewayServer.up(tmp_path_factory.mktemp("gateway"))
    except subprocess.CalledProcessError as exc:  # the image's packages come from PyPI (uv's cache when warm)
        pytest.skip(f"cannot build the Gateway image venv: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway_env(gateway_server, tmp_path_factory):
    """The password in the environment (the settings hold only its reference), a private state
    folder (warm clusters) and agi cache (the wheelhouse), for this module."""
    folder = tmp_path_factory.mktemp("gateway_state")
    saved = {key: os.environ.get(key) for key in (PASSWORD_ENV, "XDG_STATE_HOME", "XDG_CACHE_HOME")}
    os.environ[PASSWORD_ENV] = PASSWORD
    os.environ["XDG_STATE_HOME"] = str(folder / "state")
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # the wheelhouse shipped (uv's and pip's caches stay)
    try:
        yield gateway_server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cluster(server: GatewayServer, share: Path, **gateway) -> dict:
    return {"workers_data_path": str(share), "backend": "gateway", "cluster_enabled": True,
            "dask": {"max_tasks_per_slot": 1},
            "gateway": {"address": server.url, "auth": "basic", "username": "agi-test", "password": {"env": PASSWORD_ENV},
                        "workers": 2, "env_root": str(server.folder / "envs"), **gateway}}


def _ledger(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(line.split()[0], int(line.split()[1])) for line in path.read_text().splitlines() if len(line.split()) == 2]


def test_a_wrong_password_is_refused_before_anything_starts(gateway_env, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    with pytest.raises(AgiError) as caught:
        asyncio.run(AGI.run(env, mode="d", cluster=_cluster(gateway_env, tmp_path), args={"n": 2}))
    assert "refused the credentials as agi-test: 401 Unauthorized" in caught.value.message
    assert f"read from *** (env {PASSWORD_ENV})" in caught.value.message
    assert "not-the-password" not in str(caught.value) + str(caught.value.fix)
    assert "password" in caught.value.fix

    assert asyncio.run(_clusters(gateway_env.url, settle_s=0)) == []  # nothing was started
    for manifest in (tmp_path / "runs").rglob("manifest.json"):  # a record of the failed run, where no partition ran
        assert not any(p.get("status") == "ok" for p in json.loads(manifest.read_text()).get("partitions", []))


def test_the_missing_extra_is_named(tmp_path):
    """Without dask-gateway installed (its import blocked in a fresh interpreter), choosing the
    backend fails with the extra to install, not an ImportError traceback."""
    code = ("import sys; sys.modules['dask_gateway'] = None\n"
            "from agi_core.cluster.registry import backend_class\n"
            "from agi_core.base.errors import AgiError\n"
            "try:\n    backend_class('gateway')\nexcept AgiError as exc:\n    print(exc.message); print(exc.fix)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    message, fix = done.stdout.splitlines()[:2]
    assert message.startswith("the cluster backend 'gateway' cannot be loaded")
    assert fix == "pip install 'agi-orchestrator[gateway]'"


def test_processes_without_uv_or_with_another_python_are_named():
    from agi_core.cluster.env_remote import probe
    from agi_core.cluster.env_shipping import check_participants

    here = probe()  # this process, as a Gateway worker would answer
    check_participants({"worker a": here})  # the manager's own Python, with uv: accepted
    other = {**here, "python": "3.10.4", "python_minor": "3.10", "uv": None, "host": "pod-7"}
    with pytest.raises(AgiError) as caught:
        check_participants({"worker a": here, "worker b": other})
    message = caught.value.message
    assert "worker b on pod-7 runs Python 3.10.4" in message and "worker b on pod-7 has no uv" in message
    assert "worker a" not in message
    assert "uv" in caught.value.fix and "ship_environment = false" in caught.value.fix


@pytest.fixture(scope="module")
def warm_gateway(gateway_env, tmp_path_factory):
    """`agi cluster up` on the Gateway, two mode-d runs attached to it, status, `agi cluster down`."""
    share = tmp_path_factory.mktemp("gw_share")
    cluster = _cluster(gateway_env, share)
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    seen: dict = {"events": []}
    up = asyncio.run(AGI.cluster_up(env, mode="d", cluster=cluster, on_event=seen["events"].append))
    try:
        seen["up"] = up
        seen["status"] = asyncio.run(AGI.cluster_status(env, cluster=cluster))
        state_file = Path(os.environ["XDG_STATE_HOME"]) / "agi_core" / "clusters" / "ledger.json"
        seen["state"] = json.loads(state_file.read_text())
        seen["reship"] = asyncio.run(_ship_again(seen["state"], str(gateway_env.folder / "envs")))
        args = {"n": 6, "ledger": str(share / "ledger.txt")}
        seen["mode0"] = asyncio.run(AGI.run(env, mode=0, cluster={"workers_data_path": str(share)}, args=args, use_cache=False))
        (share / "ledger.txt").unlink()
        runs = []
        for _ in range(2):
            events: list = []
            started = time.perf_counter()
            result = asyncio.run(AGI.run(env, mode="d", cluster=cluster, args=args, on_event=events.append, use_cache=False))
            runs.append((result, events, time.perf_counter() - started))
        seen["runs"] = runs
        seen["ledger"] = _ledger(share / "ledger.txt")
    finally:
        seen["down"] = asyncio.run(AGI.cluster_down(env, cluster=cluster))
        seen["after"] = asyncio.run(AGI.cluster_status(env, cluster=cluster))
    return seen


async def _ship_again(state: dict, root: str):
    """`ship_environment` once more on the warm cluster (which got it from `agi cluster up`)."""
    from agi_core.cluster.client import open_client
    from agi_core.cluster.env_shipping import ship_environment
    from agi_core.cluster.warm import attach

    backend = attach(state)
    client = await open_client(backend.address, security=backend.security())
    try:
        return await ship_environment(client, app="ledger", project_dir=TEST_APPS / "ledger_project", root=root)
    finally:
        await client.close()


def test_mode_d_on_gateway_workers_equals_mode_0(warm_gateway):
    mode0 = warm_gateway["mode0"]
    for result, _, _ in warm_gateway["runs"]:
        assert result.status == "ok"
        assert result.value == mode0.value == 15 and result.results == mode0.results
        record = json.loads(result.manifest.read_text())
        workers = {w.name for w in warm_gateway["up"].workers}
        assert {p["worker"] for p in record["partitions"]} <= workers  # run by the Gateway's workers
        assert {p.get("job_id") for p in record["partitions"]} == {"gateway-pod-1"}  # the pod, by `job_id_env`
        assert record["cluster"]["backend"] == "gateway" and record["cluster"]["scheduler"].startswith("gateway://")
    assert Counter(pid for pid, _ in warm_gateway["ledger"]) == {f"l{i}": 2 for i in range(6)}  # two runs, each once


def test_a_warm_cluster_is_a_named_gateway_cluster_up_status_down(warm_gateway):
    up, status, state = warm_gateway["up"], warm_gateway["status"], warm_gateway["state"]
    assert up.running and status.running and len(status.workers) == 2
    assert state["backend"] == "gateway" and state["gateway_cluster"] and state["address"].endswith(state["gateway_cluster"])
    assert sorted(state["worker_names"]) == ["gateway-0", "gateway-1"]
    assert set(state["worker_names"].values()) == {w.name for w in status.workers}
    assert "password" not in json.dumps(state["identity"]) or state["identity"]["gateway"].get("password") is None
    assert PASSWORD not in json.dumps(state)
    assert warm_gateway["down"] == 1
    assert not warm_gateway["after"].running


def test_the_environment_is_shipped_once_then_reused(warm_gateway):
    phases = [getattr(e, "detail", "") for e in warm_gateway["events"]]
    assert any(detail.startswith("shipping ") for detail in phases)  # by `agi cluster up`
    for _, events, _ in warm_gateway["runs"]:  # the runs attached: nothing built, nothing sent
        assert not any(getattr(e, "detail", "").startswith("shipping ") for e in events)
    again = warm_gateway["reship"]  # asked again: the scheduler runs this code hash's plugin already
    assert not again.shipped and again.bytes == 0
    print(f"no-op ship_environment on a cluster that has it: {again.seconds * 1000:.0f} ms")


def test_an_adaptive_run_kept_warm_is_reused_then_stopped(gateway_env, tmp_path):
    """adaptive = {minimum = 1, maximum = 2} and shutdown_on_close = false: the first run's cluster
    stays up as the app's warm cluster, the second run attaches to it (nothing shipped), and
    `agi cluster down` stops it on the Gateway."""
    share = tmp_path / "share"
    cluster = _cluster(gateway_env, share, adaptive={"minimum": 1, "maximum": 2}, shutdown_on_close=False)
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    args = {"n": 4, "ledger": str(share / "ledger.txt")}
    runs = []
    try:
        for _ in range(2):
            events: list = []
            runs.append((asyncio.run(AGI.run(env, mode="d", cluster=cluster, args=args, use_cache=False, on_event=events.append)),
                         events))
        status = asyncio.run(AGI.cluster_status(env, cluster=cluster))
    finally:
        stopped = asyncio.run(AGI.cluster_down(env, cluster=cluster))
    (first, _), (second, second_events) = runs
    assert first.value == second.value == 6 and first.plan.assignment.keys() == {"gateway-0", "gateway-1"}
    assert not any(getattr(e, "detail", "").startswith("asking the Dask Gateway") for e in second_events)  # attached
    assert json.loads(second.manifest.read_text())["cluster"]["warm"] is True
    assert status.running and stopped == 1
    assert asyncio.run(_clusters(gateway_env.url)) == []


def test_an_environment_that_cannot_be_installed_names_the_process_and_stops_the_cluster(gateway_env, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder\n")
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    cluster = _cluster(gateway_env, tmp_path / "share", workers=1, env_root=str(blocked / "envs"))
    with pytest.raises(AgiError) as caught:
        asyncio.run(AGI.run(env, mode="d", cluster=cluster, args={"n": 2}, use_cache=False))
    assert "installing the app's environment on the Gateway's scheduler failed" in caught.value.message
    assert "NotADirectoryError" in caught.value.message and str(blocked) in caught.value.message
    assert "env_root" in caught.value.fix
    assert asyncio.run(_clusters(gateway_env.url)) == []  # the half-started cluster was shut down


def test_without_shipping_the_image_lacks_agi_and_the_version_check_says_so(gateway_env, tmp_path):
    """The image has no agi_core (this is what shipping fixes): with ship_environment = false the
    run stops at the version check, naming the package and the processes, and stops the cluster."""
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    cluster = _cluster(gateway_env, tmp_path / "share", workers=1, ship_environment=False)
    with pytest.raises(AgiError) as caught:
        asyncio.run(AGI.run(env, mode="d", cluster=cluster, args={"n": 2}, use_cache=False))
    assert "package versions differ between this manager and the cluster" in caught.value.message
    assert "agi-orchestrator: 0.1.0 on this manager, not installed on" in caught.value.message
    assert "(scheduler)" in caught.value.message and "(worker " in caught.value.message
    assert asyncio.run(_clusters(gateway_env.url)) == []


async def _clusters(url: str, settle_s: float = 30.0) -> list:
    """The user's clusters the Gateway still lists, once those being stopped are gone (a stop
    request returns before the Gateway has stopped the processes; polled, at most ``settle_s``)."""
    from dask_gateway import BasicAuth, Gateway

    async with Gateway(url, auth=BasicAuth("agi-test", PASSWORD), asynchronous=True) as gateway:
        deadline = time.monotonic() + settle_s
        while (clusters := await gateway.list_clusters()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return clusters


# -- a worker killed mid-run ---------------------------------------------------------------------


async def _kill_worker(url: str, pid: int) -> None:
    """SIGKILL the Gateway worker whose process is ``pid``, its nanny told not to start it again
    (the survivor is then the only worker left). Reached as its user would: through the Gateway."""
    from dask_gateway import BasicAuth, Gateway

    async with Gateway(url, auth=BasicAuth("agi-test", PASSWORD), asynchronous=True) as gateway:
        (report,) = await gateway.list_clusters()
        cluster = await gateway.connect(report.name)
        try:
            with warnings.catch_warnings():  # this client has the app's numpy, the image has none: Dask's noise
                warnings.simplefilter("ignore")
                client = await cluster.get_client(set_as_default=False)
            async with client:
                pids = await client.run(os.getpid)
                address = next(a for a, p in pids.items() if p == pid)
                await client.run(lambda dask_worker: dask_worker.close_gracefully(reason="test: stay down"), nanny=True,
                                 workers=[address])
                os.kill(pid, signal.SIGKILL)
        finally:
            await cluster.close()  # this handle only: the run's cluster goes on


def test_a_worker_killed_mid_run_moves_its_partitions_exactly_once(gateway_env, tmp_path):
    share, ledger, gate = tmp_path / "share", tmp_path / "share" / "ledger.txt", tmp_path / "gate"
    share.mkdir()
    cluster = _cluster(gateway_env, share)
    env = AgiEnv(app="ledger", apps_path=TEST_APPS)
    plan = asyncio.run(AGI.get_distrib(env, mode="d", cluster=cluster, args={"n": 6}))
    victim, survivor = sorted(plan.assignment)
    batch = list(plan.assignment[victim])
    held = batch[1]
    args = {"n": 6, "ledger": str(ledger), "hold": held, "gate": str(gate)}
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(AGI.run(env, mode="d", cluster=cluster, args=args, use_cache=False))
        except BaseException as exc:  # noqa: BLE001 - the assertion below shows it
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 180
        while not any(pid == held for pid, _ in _ledger(ledger)):
            assert thread.is_alive(), box.get("error")
            assert time.monotonic() < deadline, "the held partition never started"
            time.sleep(0.1)
        held_pid = next(proc for pid, proc in _ledger(ledger) if pid == held)
        asyncio.run(_kill_worker(gateway_env.url, held_pid))
    finally:
        gate.touch()
        thread.join(timeout=180)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.status == "ok" and result.value == 15
    ran = Counter(pid for pid, _ in _ledger(ledger))
    before, _, after = batch
    # what started on the lost worker ran again once; what had not started there ran once
    assert ran[before] == 2 and ran[held] == 2 and ran[after] == 1
    assert sum(ran.values()) == 6 + 2
    record = json.loads(result.manifest.read_text())
    assert {p["id"]: p.get("retries", 0) for p in record["partitions"] if p.get("retries")} == {before: 1, held: 1}
    assert {p["ran_slot"] for p in record["partitions"] if p["id"] in batch} == {survivor}
