"""Cluster backends by name, self-sufficient specs, and agi's own version check."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from agi_core import AgiError, Mode
from agi_core.cluster import ClusterSpec, backend_class, cluster_spec, known_backends, spec_for, worker_facts
from agi_core.cluster.backend import ClusterBackend
from agi_core.cluster.client import connect_client, open_client
from agi_core.cluster.inprocess import InProcessCluster
from agi_core.cluster.launched import LaunchedCluster
from agi_core.cluster.launched_commands import host_python
from agi_core.cluster.ssh_cluster import SshCluster
from agi_core.cluster.versions import Participant, compare_versions, mismatch_error
from agi_core.settings import ClusterSettings

MANAGER = {"python": "3.11.9.final.0", "dask": "2026.8.0", "distributed": "2026.8.0", "cloudpickle": "3.1.1",
           "msgpack": "1.1.0", "agi-orchestrator": "0.1.0", "tornado": "6.5"}


def settings(**cluster) -> ClusterSettings:
    return ClusterSettings.model_validate(cluster)


# -- registry ---------------------------------------------------------------------------------------


def test_registry_names_the_default_backends():
    assert backend_class("ssh") is SshCluster
    assert backend_class("inprocess") is InProcessCluster and backend_class("launched") is LaunchedCluster
    assert set(known_backends) >= {"ssh", "inprocess", "launched"}


def test_an_unknown_backend_lists_the_known_ones():
    with pytest.raises(AgiError) as info:
        backend_class("slurmm")
    assert "unknown cluster backend 'slurmm'" in str(info.value)
    assert "inprocess, launched, slurm, ssh" in info.value.fix


def test_a_missing_package_names_the_backend_and_the_fix():
    registry = {"slurm": {"class": "agi_core_test_missing_jobqueue.SLURMBackend", "err": "pip install dask-jobqueue"}}
    with pytest.raises(AgiError) as info:
        backend_class("slurm", registry)
    assert "cluster backend 'slurm'" in str(info.value) and "agi_core_test_missing_jobqueue" in str(info.value)
    assert info.value.fix == "pip install dask-jobqueue"


def test_a_class_that_is_not_a_backend_is_refused():
    with pytest.raises(AgiError, match="not a ClusterBackend subclass"):
        backend_class("odd", {"odd": {"class": "agi_core.cluster.spec.ClusterSpec", "err": ""}})


def test_the_settings_pick_the_backend():
    assert cluster_spec(settings(workers={"127.0.0.1": 1}), Mode.CLUSTER).backend == "ssh"
    remote = settings(backend="inprocess", scheduler="10.0.0.1:8786", workers={"10.0.0.2": 1})
    spec = cluster_spec(remote, Mode.CLUSTER, app="toy")
    assert spec.backend == "inprocess"
    with pytest.raises(AgiError, match="this machine only"):
        backend_class(spec.backend)(spec)


# -- the backend contract -----------------------------------------------------------------------------


def test_the_ssh_backend_is_embedded_on_this_machine_and_launched_across_hosts():
    local = cluster_spec(settings(workers={"127.0.0.1": 2}), Mode.CLUSTER, app="toy")
    remote = cluster_spec(settings(scheduler="10.0.0.1:8786", workers={"10.0.0.2": 2}), Mode.CLUSTER, app="toy")
    assert isinstance(SshCluster(local).inner, InProcessCluster)
    assert isinstance(SshCluster(remote).inner, LaunchedCluster)
    assert isinstance(SshCluster.warm(local), LaunchedCluster)  # a warm cluster outlives this process
    with pytest.raises(AgiError, match="cannot keep a cluster running"):
        InProcessCluster.warm(local)


def test_defaults_of_the_contract():
    class Minimal(ClusterBackend):
        async def launch(self, emit=None) -> None:
            self.address = "tcp://127.0.0.1:1"

        async def close(self) -> None:
            pass

    spec = cluster_spec(settings(workers={"127.0.0.1": 2}), Mode.CLUSTER)
    backend = Minimal(spec)
    assert backend.worker_names() == {"127.0.0.1-0": "127.0.0.1-0", "127.0.0.1-1": "127.0.0.1-1"}
    assert asyncio.run(backend.missing_workers_report(set())) == ""
    assert backend.security() is None and backend.started() == ()


# -- specs ----------------------------------------------------------------------------------------------


def test_a_spec_holds_everything_a_launched_backend_needs():
    cluster = settings(scheduler="agi@10.0.0.1:9000", workers={"root@10.0.0.2:2222": 1},
                       ssh={"user": "agi", "key": "~/.ssh/id_test"}, install={"root": "/opt/agi/", "concurrency": 7})
    spec = cluster_spec(cluster, Mode.CLUSTER, app="toy")
    assert (spec.app, spec.root, spec.venv, spec.fan_out) == ("toy", "/opt/agi", "/opt/agi/venvs/toy", 7)
    assert spec.ssh.key == "~/.ssh/id_test" and spec.scheduler_host == "agi@10.0.0.1"
    assert spec.scheduler_address == "tls://10.0.0.1:9000"
    [worker] = spec.workers
    assert (worker.slot, worker.name, worker.host, worker.address) == ("root@10.0.0.2:2222-0", "root@10.0.0.2:2222-0",
                                                                        "root@10.0.0.2:2222", "10.0.0.2")
    launched = LaunchedCluster(spec)  # from the spec alone
    assert launched.address == "tls://10.0.0.1:9000" and host_python(spec, worker.host) == "/opt/agi/venvs/toy/bin/python"
    assert ClusterSpec.from_json(spec.to_json()) == spec


def test_ipv6_addresses_are_bracketed():
    spec = cluster_spec(settings(scheduler="[::1]:8786", workers={"::1": 1}), Mode.CLUSTER)
    assert spec.scheduler_address == "tls://[::1]:8786" and spec.workers[0].address == "::1" and spec.local_only
    no_port = settings(scheduler="fe80::1", workers={"fe80::2": 1}, dask={"scheduler_port": 9999})
    default_port = cluster_spec(no_port, Mode.CLUSTER)
    assert default_port.scheduler_address == "tls://[fe80::1]:9999"


def test_spec_for_resolves_the_mode_and_reads_the_app(toy_env):
    cluster = settings(workers={"127.0.0.1": 2}, pool=True)
    spec = spec_for(cluster, cluster.mode, "toy", app_distribution=toy_env.distribution, app_version=toy_env.version())  # the settings' mode (pool bit: threads)
    assert (spec.app, spec.app_distribution, spec.app_version) == ("toy", "toy", "0.0.1")
    assert all(w.nthreads >= 1 for w in spec.workers)
    assert {w.nthreads for w in spec_for(cluster, Mode.CLUSTER, "toy").workers} == {1}


# -- versions -------------------------------------------------------------------------------------------


def worker(name: str, host: str, **versions: str | None) -> Participant:
    return Participant("worker", name, host, {**MANAGER, **versions})


def test_patch_level_python_differences_are_silent():
    others = [worker("10.0.0.2-0", "10.0.0.2", python="3.11.2.final.0", tornado="6.4"),
              Participant("scheduler", "scheduler", "10.0.0.1", {**MANAGER, "python": "3.11.2.final.0"})]
    assert compare_versions(MANAGER, others) == []


def test_a_real_mismatch_names_the_host_the_package_both_versions_and_the_fix():
    others = [worker("10.0.0.2-0", "10.0.0.2"), worker("10.0.0.3-0", "10.0.0.3", distributed="2025.1.0"),
              worker("10.0.0.3-1", "10.0.0.3", distributed="2025.1.0", python="3.12.1.final.0")]
    mismatches = compare_versions(MANAGER, others)
    assert {(m.package, m.manager, m.found) for m in mismatches} == {("distributed", "2026.8.0", "2025.1.0"),
                                                                      ("python", "3.11", "3.12")}
    error = mismatch_error(mismatches, "toy")
    message = str(error)
    assert ("distributed: 2026.8.0 on this manager, 2025.1.0 on 10.0.0.3 (worker 10.0.0.3-0), "
            "10.0.0.3 (worker 10.0.0.3-1)") in message
    assert "python: 3.11 on this manager, 3.12 on 10.0.0.3 (worker 10.0.0.3-1)" in message
    assert "10.0.0.2" not in message and error.fix == "re-install the hosts from this manager: agi install toy"


def test_the_app_must_be_installed_at_the_managers_version_except_on_this_machine():
    others = [worker("127.0.0.1-0", "127.0.0.1", toy=None),  # runs the app from its source folder: fine
              worker("127.0.0.1-1", "127.0.0.1", toy="0.0.0"),  # stale build metadata beside that folder: ignored
              worker("10.0.0.2-0", "10.0.0.2", toy="0.0.1"),
              worker("10.0.0.3-0", "10.0.0.3", toy="0.0.0"),
              worker("10.0.0.4-0", "10.0.0.4", toy=None)]
    mismatches = compare_versions(MANAGER, others, app_distribution="toy", app_version="0.0.1")
    assert {(m.found, m.where) for m in mismatches} == {
        ("0.0.0", ("10.0.0.3 (worker 10.0.0.3-0)",)), (None, ("10.0.0.4 (worker 10.0.0.4-0)",))}
    assert "toy: 0.0.1 on this manager, not installed on 10.0.0.4" in str(mismatch_error(mismatches, "toy"))


# -- against a real cluster on this machine --------------------------------------------------------------


@pytest.fixture
def fake_manager_versions(monkeypatch):
    """Make this process (the manager, and the in-process scheduler) report other versions."""
    import distributed.versions

    real = distributed.versions.get_package_info

    def patch(**versions: str) -> None:
        monkeypatch.setattr(distributed.versions, "get_package_info", lambda pkgs: {**real(pkgs), **versions})

    return patch


def connect(spec: ClusterSpec, check=None):
    async def go():
        async with InProcessCluster(spec) as cluster:
            client = await connect_client(cluster, spec)
            try:
                return await check(client) if check else None
            finally:
                await client.close()

    return asyncio.run(go())


def test_dask_does_not_warn_about_a_patch_level_difference(fake_manager_versions):
    import sys

    major, minor, patch = sys.version_info[:3]
    fake_manager_versions(python=f"{major}.{minor}.{patch + 1}.final.0")
    spec = cluster_spec(settings(workers={"127.0.0.1": 1}), Mode.CLUSTER, app="toy")

    async def plain_dask_warns(client) -> list[str]:  # the control: Dask itself does warn here
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            other = await __import__("distributed").Client(client.scheduler.address, asynchronous=True, security=client.security)
            await other.close()
        return [str(w.message) for w in caught]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dask_warnings = connect(spec, plain_dask_warns)
    assert any("Mismatched versions" in text for text in dask_warnings)
    assert not [w for w in caught if "Mismatched versions" in str(w.message)]


def test_a_real_mismatch_on_a_cluster_is_an_error(fake_manager_versions):
    fake_manager_versions(cloudpickle="0.0.1")
    spec = cluster_spec(settings(workers={"127.0.0.1": 1}), Mode.CLUSTER, app="toy")
    with pytest.raises(AgiError) as info:
        connect(spec)
    assert "cloudpickle: 0.0.1 on this manager" in str(info.value) and "127.0.0.1 (worker 127.0.0.1-0)" in str(info.value)
    assert "agi install toy" in info.value.fix


def test_worker_facts(toy_env):
    spec = cluster_spec(settings(workers={"127.0.0.1": {"count": 2, "capabilities": ["gpu"]}}), Mode.CLUSTER, app="toy")
    facts = connect(spec, lambda client: worker_facts(client, "toy"))
    import os
    import platform

    import dask

    assert sorted(facts) == ["127.0.0.1-0", "127.0.0.1-1"]
    one = facts["127.0.0.1-0"]
    assert (one.name, one.host, one.python, one.dask) == ("127.0.0.1-0", "127.0.0.1", platform.python_version(), dask.__version__)
    # the toy app runs from its source folder here: its version is known when that folder holds build metadata
    assert one.agi_core == "0.1.0" and one.app in (None, toy_env.version())
    assert one.cores == os.cpu_count() and one.nthreads == 1 and one.gpus == 1.0 and one.memory_limit > 0
    assert one.to_json()["name"] == "127.0.0.1-0"


def test_open_client_passes_unreachable_schedulers_on():
    with pytest.raises((OSError, TimeoutError)):
        asyncio.run(open_client("tcp://127.0.0.1:9", timeout=1))
