"""Pure logic of the SSH, probe, install and cluster layers (their real paths run on the rig)."""

import pytest

from agi_core import Mode, SettingsError
from agi_core.cluster.spec import cluster_spec
from agi_core.cluster.warm import mismatch
from agi_core.install.artifacts import Target, _requirement_name
from agi_core.install.capabilities import HostInfo
from agi_core.install.installer import hosts_of
from agi_core.settings import ClusterSettings, SshSettings
from agi_core.ssh import SshTarget

PROBE = """os=Linux
arch=x86_64
hostname=h2
python=/usr/bin/python3
python_version=3.11.2
libc=glibc-2.36
cores=16
memory_kb=131072000
cc=/usr/bin/cc
uv=
gpu=0, NVIDIA H100 80GB HBM3, 81559
gpu=1, NVIDIA H100 80GB HBM3, 81559
"""


def test_probe_output_is_parsed():
    info = HostInfo.parse("10.0.0.2", PROBE)
    assert (info.os, info.arch, info.hostname, info.cores) == ("Linux", "x86_64", "h2", 16)
    assert info.python_minor == "3.11" and info.glibc == (2, 36) and info.memory_gb == 125.0
    assert info.uv == "" and info.gpus == ["NVIDIA H100 80GB HBM3, 81559 MiB"] * 2
    assert [(gpu.index, gpu.memory_mib) for gpu in info.devices] == [(0, 81559), (1, 81559)]


def test_ssh_target_reads_user_and_port_from_the_worker_map_key():
    ssh = SshSettings(user="agi", port=22, key="~/.ssh/id_test", known_hosts="~/kh")
    target = SshTarget.from_settings("root@10.0.0.2:2222", ssh)
    assert (target.host, target.port, target.user) == ("10.0.0.2", 2222, "root")
    assert str(target.key).endswith(".ssh/id_test") and "~" not in str(target.known_hosts)
    plain = SshTarget.from_settings("10.0.0.3", ssh)
    assert (plain.host, plain.port, plain.user) == ("10.0.0.3", 22, "agi")


def test_wheel_targets():
    target = Target("3.11", "x86_64", (2, 36))
    assert target.key == "cp311-x86_64-glibc2.36" and target.uv_platform() == "x86_64-manylinux_2_36"
    platforms = target.pip_platforms()
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in platforms and "manylinux2014_x86_64" in platforms
    assert Target("3.12", "aarch64", None).uv_platform() == "aarch64-manylinux_2_17"
    assert [_requirement_name(r) for r in ("dask[distributed]>=2024", "uv", "Py_Yaml ; python_version>'3'")] == ["dask", "uv", "py-yaml"]


def test_hosts_of_puts_the_scheduler_first():
    cluster = ClusterSettings.model_validate({"scheduler": "10.0.0.1:8786", "workers": {"10.0.0.2": 2, "10.0.0.1": 1}})
    assert hosts_of(cluster) == {"10.0.0.1": ["scheduler", "1 workers"], "10.0.0.2": ["2 workers"]}
    default = ClusterSettings()
    assert hosts_of(default) == {"127.0.0.1": [f"{default.worker_map()['127.0.0.1'].count} workers"]}  # ClusterSettings.worker_map


def test_cluster_spec_names_threads_and_ports():
    cluster = ClusterSettings.model_validate({"scheduler": "10.0.0.1:9999", "workers": {"10.0.0.2": 2, "10.0.0.3": {"count": 1, "capabilities": ["gpu"]}}})
    spec = cluster_spec(cluster, Mode.CLUSTER)
    assert [w.name for w in spec.workers] == ["10.0.0.2-0", "10.0.0.2-1", "10.0.0.3-0"]
    assert {w.nthreads for w in spec.workers} == {1} and [w.gpu for w in spec.workers] == [False, False, True]
    assert spec.scheduler_address == "tls://10.0.0.1:9999" and not spec.local_only and not spec.embedded  # TLS by default
    pooled = cluster_spec(cluster, Mode.CLUSTER | Mode.POOL)
    assert {w.nthreads for w in pooled.workers} == {0}  # 0: the host's cores / its workers, decided there
    embedded = cluster_spec(ClusterSettings.model_validate({"workers": {"127.0.0.1": 2}}), Mode.CLUSTER | Mode.POOL, local_threads=4)
    assert embedded.embedded and embedded.local_only and {w.nthreads for w in embedded.workers} == {2}
    plain = cluster_spec(ClusterSettings.model_validate({"workers": {"127.0.0.1": 1}, "tls": False}), Mode.CLUSTER)
    assert plain.scheduler_address.startswith("tcp://")  # plain TCP only when asked for


def test_remote_workers_need_a_scheduler():
    with pytest.raises(SettingsError, match="no scheduler"):
        cluster_spec(ClusterSettings.model_validate({"workers": {"10.0.0.2": 1}}), Mode.CLUSTER)
    with pytest.raises(SettingsError, match="no workers"):
        cluster_spec(ClusterSettings.model_validate({"workers": {"127.0.0.1": 0}}), Mode.CLUSTER)


def test_warm_cluster_mismatch_says_what_differs():
    two = cluster_spec(ClusterSettings.model_validate({"workers": {"127.0.0.1": 2}}), Mode.CLUSTER)
    one = cluster_spec(ClusterSettings.model_validate({"workers": {"127.0.0.1": 1}}), Mode.CLUSTER)
    state = {"identity": two.identity()}
    assert mismatch(state, two) is None
    assert "it has 127.0.0.1-1" in mismatch(state, one)
    plain = cluster_spec(ClusterSettings.model_validate({"workers": {"127.0.0.1": 2}, "tls": False}), Mode.CLUSTER)
    assert "tls" in mismatch(state, plain)


def test_install_app_emits_host_steps_and_draws_nothing(toy_env, monkeypatch, capsys):
    """The core reports each host's steps as `HostStep` events, and prints nothing."""
    import asyncio

    from agi_core.base.events import HostStep
    from agi_core.install import installer
    from agi_core.install.host import HostReport

    async def fake_install_host(host, roles, ctx, on_event):
        on_event(HostStep(host, "probe"))
        ok = host != "10.0.0.3"
        on_event(HostStep(host, "unchanged" if ok else "failed", done=True, failed=not ok))
        return HostReport(host, roles, status="unchanged" if ok else "failed", cause=None if ok else "unreachable")

    monkeypatch.setattr(installer, "install_host", fake_install_host)
    cluster = ClusterSettings.model_validate({"scheduler": "10.0.0.2:8786", "workers": {"10.0.0.2": 1, "10.0.0.3": 1}})
    events = []
    with pytest.raises(installer.InstallError, match="10.0.0.3: unreachable") as info:
        asyncio.run(installer.install_app(toy_env, cluster, Mode.CLUSTER, on_event=events.append))
    assert [h.status for h in info.value.report.hosts] == ["unchanged", "failed"]
    assert events[:2] == [HostStep("10.0.0.2", "waiting"), HostStep("10.0.0.3", "waiting")]
    assert HostStep("10.0.0.3", "failed", done=True, failed=True) in events
    assert capsys.readouterr() == ("", "")  # the core never prints

