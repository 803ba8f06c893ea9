"""`agi install` and `agi doctor` against real OpenSSH servers on the multi-host rig (3 hosts)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest

from agi_core import AGI, AgiEnv
from agi_core.install import InstallError
from tests.conftest import ROOT, run_agi

pytestmark = pytest.mark.rig


def cluster_for(rig, **extra):
    """Settings that reach the rig's hosts: root, the rig's client key and known_hosts, 1 worker each."""
    ssh = {"user": "root", "key": str(rig.client_key), "known_hosts": str(rig.known_hosts), "connect_timeout": 3}
    cluster = {"ssh": ssh, "workers": {h.ip: 1 for h in rig.hosts}, "scheduler": f"{rig.hosts[0].ip}:8786"}
    for key, value in extra.items():
        if key == "ssh":
            cluster[key] = {**cluster[key], **value}
        else:
            cluster[key] = value
    return cluster


def install(env, rig, **extra):
    return asyncio.run(AGI.install(env, cluster=cluster_for(rig, **extra)))


def host_python(host, code):
    out = host.run(["/root/.agi/venvs/mandelbrot/bin/python", "-c", code])
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def mandelbrot_copy(tmp_path):
    """A private copy of the example app, so a test may change its code."""
    apps = tmp_path / "apps"
    shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return AgiEnv(app="mandelbrot", apps_path=apps)


def test_cold_install_offline_then_noop_then_app_only(rig_hosts, mandelbrot_copy):
    rig = rig_hosts
    for host in rig.hosts:
        host.run("rm -rf /root/.agi")
        offline = host.run("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 443), timeout=2)\"")
        assert offline.returncode != 0  # the hosts have no route out: everything comes from the manager

    cold = install(mandelbrot_copy, rig)
    assert [h.status for h in cold.hosts] == ["installed"] * 3, [(h.host, h.cause) for h in cold.hosts]
    assert all(h.uploaded_files > 10 for h in cold.hosts)
    for host in rig.hosts:
        out = host_python(host, "import mandelbrot, distributed, agi_core, socket; print(socket.gethostname(), distributed.__version__)")
        assert out.stdout.split()[0] == host.name
        assert host.run("test -x /root/.agi/bin/uv").returncode == 0  # uv was put there

    again = install(mandelbrot_copy, rig)
    assert [h.status for h in again.hosts] == ["unchanged"] * 3, [(h.host, h.detail) for h in again.hosts]
    assert sum(h.uploaded_files for h in again.hosts) == 0

    kernels = mandelbrot_copy.src_dir / "mandelbrot" / "kernels.py"
    kernels.write_text(kernels.read_text() + "\nMARKER = 'changed'\n")
    changed = install(mandelbrot_copy, rig)
    assert [h.status for h in changed.hosts] == ["updated"] * 3
    assert all(h.detail == "re-installed mandelbrot" for h in changed.hosts)
    assert [h.uploaded_files for h in changed.hosts] == [1, 1, 1]  # only the app wheel
    for host in rig.hosts:
        assert host_python(host, "import mandelbrot.kernels as k; print(k.MARKER)").stdout.strip() == "changed"


def test_wrong_client_key_is_refused_by_name(rig_hosts, tmp_path):
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(InstallError) as info:
        install(AgiEnv(app="mandelbrot"), rig_hosts, ssh={"key": str(key)})
    causes = {h.host: h.cause for h in info.value.report.hosts}
    assert all(cause.startswith("authentication refused") for cause in causes.values()), causes
    assert rig_hosts.hosts[1].ip in str(info.value)


def test_unknown_host_key_shows_its_fingerprint(rig_hosts, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(InstallError) as info:
        install(AgiEnv(app="mandelbrot"), rig_hosts, ssh={"known_hosts": str(empty)})
    for host in info.value.report.hosts:
        assert host.cause.startswith("unknown host key") and "SHA256:" in host.cause
        assert "agi hosts trust" in host.fix


def test_changed_host_key_is_refused(rig_hosts, tmp_path):
    rig = rig_hosts
    forged = tmp_path / "known_hosts"
    other = tmp_path / "forged_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake = " ".join((other.with_suffix(".pub")).read_text().split()[:2])
    lines = [line for line in rig.known_hosts.read_text().splitlines() if rig.hosts[1].ip not in line]
    forged.write_text("\n".join(lines + [f"{rig.hosts[1].ip} {fake}"]) + "\n")
    report = asyncio.run(AGI.doctor(AgiEnv(app="mandelbrot"), cluster=cluster_for(rig, ssh={"known_hosts": str(forged)})))
    [ssh_check] = [c for h in report.hosts if h.host == rig.hosts[1].ip for c in h.checks if c.name == "ssh"]
    assert not ssh_check.ok and ssh_check.detail.startswith("host key CHANGED")
    with pytest.raises(InstallError) as info:
        install(AgiEnv(app="mandelbrot"), rig, ssh={"known_hosts": str(forged)})
    failed = {h.host: h.cause for h in info.value.report.failed}
    assert list(failed) == [rig.hosts[1].ip] and failed[rig.hosts[1].ip].startswith("host key CHANGED")


def test_a_down_host_does_not_stop_the_others(rig_hosts):
    rig = rig_hosts
    env = AgiEnv(app="mandelbrot")
    install(env, rig)  # warm: the others are then unchanged
    rig.hosts[2].crash()
    with pytest.raises(InstallError) as info:
        install(env, rig)
    statuses = {h.host: h.status for h in info.value.report.hosts}
    assert statuses[rig.hosts[2].ip] == "failed" and "connection refused" in info.value.report.failed[0].cause
    assert [statuses[h.ip] for h in rig.hosts[:2]] == ["unchanged", "unchanged"]
    assert str(info.value).startswith("install failed on 1 of 3 host(s)") and rig.hosts[2].ip in str(info.value)


def test_a_cut_link_times_out_by_name(rig_hosts):
    rig = rig_hosts
    rig.hosts[1].cut_link()
    with pytest.raises(InstallError) as info:
        install(AgiEnv(app="mandelbrot"), rig, ssh={"connect_timeout": 1.5})
    [failed] = info.value.report.failed
    assert failed.host == rig.hosts[1].ip and failed.cause.startswith("timeout after 1.5 s")


def test_doctor_catches_a_host_where_the_share_is_another_directory(rig_hosts, tmp_path):
    rig = rig_hosts
    env = AgiEnv(app="mandelbrot")
    install(env, rig)
    share = tmp_path / "share"
    share.mkdir()
    good = asyncio.run(AGI.doctor(env, cluster=cluster_for(rig, workers_data_path=str(share))))
    assert good.ok, [(h.host, [c for c in h.checks if not c.ok]) for h in good.hosts]
    mounted = rig.hosts[2].run(["mount", "-t", "tmpfs", "tmpfs", str(share)])  # that host now sees an empty folder there
    assert mounted.returncode == 0, mounted.stderr
    bad = asyncio.run(AGI.doctor(env, cluster=cluster_for(rig, workers_data_path=str(share))))
    failing = {h.host: [c.name for c in h.checks if not c.ok] for h in bad.hosts if not h.ok}
    assert failing == {rig.hosts[2].ip: ["share"]}


def test_doctor_cli_exits_non_zero_and_install_cli_names_failed_hosts(rig_hosts, tmp_path):
    rig = rig_hosts
    rig.hosts[0].crash()
    sets = ['cluster.ssh.user="root"', f'cluster.ssh.key="{rig.client_key}"', f'cluster.ssh.known_hosts="{rig.known_hosts}"']
    args = [a for s in sets for a in ("--set", s)] + [a for h in rig.hosts for a in ("--workers", f"{h.ip}=1")]
    doctor = run_agi("doctor", "mandelbrot", *args)
    assert doctor.returncode == 1 and "connection refused" in doctor.stdout and rig.hosts[0].ip in doctor.stderr
    installed = run_agi("install", "mandelbrot", "--json", *args)
    assert installed.returncode == 1
    report = json.loads(installed.stdout)
    assert [h["status"] for h in report["hosts"]][0] == "failed" and rig.hosts[0].ip in installed.stderr


def test_hosts_trust_records_the_key_only_when_confirmed(rig_hosts, tmp_path):
    rig = rig_hosts
    known = tmp_path / "known_hosts"
    ip = rig.hosts[0].ip
    refused = run_agi("hosts", "trust", ip, "--known-hosts", str(known))  # no terminal: the prompt reads "no"
    assert refused.returncode == 1 and "SHA256:" in refused.stdout and not known.exists()
    accepted = run_agi("hosts", "trust", ip, "--known-hosts", str(known), "--yes")
    assert accepted.returncode == 0, accepted.stderr
    assert ip in known.read_text()
    again = run_agi("hosts", "trust", ip, "--known-hosts", str(known))
    assert "already trusted" in again.stdout
    # and now the host is reachable with that file
    report = install(AgiEnv(app="mandelbrot"), rig, ssh={"known_hosts": str(known)}, workers={ip: 1}, scheduler=None)
    assert report.hosts[0].status in ("installed", "unchanged", "updated")


def test_cython_bit_compiles_kernels_on_the_host_and_runs_them(rig_hosts, mandelbrot_copy, tmp_path, monkeypatch):
    rig = rig_hosts
    host = rig.hosts[1]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cluster = cluster_for(rig, workers={host.ip: 1}, scheduler=f"{host.ip}:8786", workers_data_path=str(tmp_path),
                          dask={"dashboard_port": None, "start_timeout": 30})
    events = []
    report = asyncio.run(AGI.install(mandelbrot_copy, cluster=cluster, modes_enabled="dc", on_event=events.append))
    assert report.hosts[0].status in ("installed", "updated"), report.hosts[0].cause
    output = [(e.step, e.line) for e in events if e.kind == "host_output" and e.host == host.ip]  # streamed over SSH
    assert ("cython", "compiling kernels_cy.pyx (mandelbrot.kernels_cy)") in output and any(s == "install" for s, _ in output)
    built = host.run("ls /root/.agi/venvs/mandelbrot/lib/python3.11/site-packages/mandelbrot/")
    assert "kernels_cy.cpython-311-x86_64-linux-gnu.so" in built.stdout
    result = asyncio.run(AGI.run(mandelbrot_copy, mode="dc", cluster=cluster, width=120, height=90, bands=4))
    record = json.loads(result.manifest.read_text())
    assert {(p["host"], p["kernel"]) for p in record["partitions"]} == {(host.name, "cython")}


def test_hosts_can_install_from_a_package_index(rig_hosts, tmp_path):
    """[cluster.install] source = "index": only agi_core's and the app's wheels are uploaded."""
    from agi_core.base.paths import cache_dir

    wheelhouse = next(cache_dir("wheelhouse").glob("cp311-*"), None)
    if wheelhouse is None:
        install(AgiEnv(app="mandelbrot"), rig_hosts)  # fills the manager's wheelhouse
        wheelhouse = next(cache_dir("wheelhouse").glob("cp311-*"))
    index = tmp_path / "simple"  # a PEP 503 index on the shared filesystem, as a lab mirror would be
    for wheel in wheelhouse.glob("*.whl"):
        project = index / wheel.name.split("-")[0].lower().replace("_", "-")
        project.mkdir(parents=True, exist_ok=True)
        (project / wheel.name).write_bytes(wheel.read_bytes())
        (project / "index.html").write_text("".join(f'<a href="{w.name}">{w.name}</a>\n' for w in project.glob("*.whl")))
    host = rig_hosts.hosts[2]
    host.run("rm -rf /root/.agi")
    report = install(AgiEnv(app="mandelbrot"), rig_hosts, workers={host.ip: 1}, scheduler=None,
                     install={"source": "index", "index_url": f"file://{index}"})
    [result] = report.hosts
    assert result.status == "installed", result.cause
    assert result.uploaded_files == 2  # agi_core and the app; every dependency came from the index
    host_python(host, "import mandelbrot, distributed")
