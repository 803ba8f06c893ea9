"""Clusters authenticate every connection by default: each cluster's own credentials, strangers refused.

The refusal of strangers by the other listening backends is tested where those clusters already
run: a warm cluster (tests/test_cluster_local.py), the SSH rig (tests/test_cluster_rig.py) and
Slurm (tests/test_slurm.py); all use `tests.strangers`.
"""

from __future__ import annotations

import asyncio
import getpass
import json

import pytest

from agi_core import AgiError, Mode
from agi_core.cluster import WarmClusters, spec_for
from agi_core.cluster.inprocess import InProcessCluster
from agi_core.cluster.tls import FILE_NAMES, ClusterCredentials, insecure_warning, make_credentials
from agi_core.cluster.warm import open_cluster
from tests.conftest import TEST_APPS, run_agi
from tests.strangers import assert_refused, attempts, run_as


def test_each_cluster_gets_its_own_ca_whose_key_is_never_kept():
    from cryptography import x509

    first, second = make_credentials(["10.0.0.1"]), make_credentials(["10.0.0.1"])
    assert first.ca != second.ca and first.key != second.key
    ca = x509.load_pem_x509_certificate(first.ca.encode())
    cert = x509.load_pem_x509_certificate(first.cert.encode())
    assert cert.issuer == ca.subject and ca.subject != x509.load_pem_x509_certificate(second.ca.encode()).subject
    cert.verify_directly_issued_by(ca)  # signed by its own CA ...
    with pytest.raises(ValueError):
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(second.ca.encode()))  # ... and no other
    # the only private key is the certificate's: the CA's was discarded once it signed
    assert [text.count("PRIVATE KEY-----") for text in (first.ca, first.cert, first.key)] == [0, 0, 2]


def test_saved_credentials_are_private_and_a_missing_file_is_named(tmp_path):
    credentials = make_credentials(["127.0.0.1"])
    folder = tmp_path / "tls" / "toy"
    files = credentials.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILE_NAMES)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == dict.fromkeys(FILE_NAMES, 0o600)
    assert [d.stat().st_mode & 0o777 for d in (folder.parent, folder)] == [0o700, 0o700]
    assert ClusterCredentials.load(folder, cluster="toy") == credentials and files.key == folder / "cluster.key"
    files.key.unlink()
    with pytest.raises(AgiError) as info:
        ClusterCredentials.load(folder, cluster="the warm cluster of 'toy'")
    assert f"{files.key}: ENOENT" in info.value.message and "agi cluster down APP" in info.value.fix


async def _embedded(toy_env, tmp_path, **cluster) -> tuple[str, str, dict[str, str], bool]:
    """A mode-d cluster of the toy app's settings, as a run opens it: (its address, who the
    owner's client runs as, what strangers got, whether it is the in-process backend)."""
    spec = spec_for(toy_env.settings(cluster={"workers": {"127.0.0.1": 1}, **cluster}).cluster, Mode.parse("d"), toy_env.name)
    async with open_cluster(spec, warm=WarmClusters(tmp_path / "clusters")) as handle:
        owner = await run_as(handle.client)
        strangers = await attempts(handle.backend.address, owner=handle.client)
        return handle.backend.address, owner, strangers, isinstance(getattr(handle.backend, "inner", None), InProcessCluster)


def test_the_embedded_cluster_of_mode_d_refuses_strangers(toy_env, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    address, owner, strangers, in_process = asyncio.run(_embedded(toy_env, tmp_path))  # the default settings
    assert in_process and address.startswith("tls://")
    assert owner == getpass.getuser()  # the control: the run's own client does run code there
    assert_refused(strangers)
    assert not (tmp_path / "state").exists()  # its credentials lived in memory only


def test_plain_tcp_is_asked_for_and_lets_a_stranger_run_code(toy_env, tmp_path):
    """What ``tls = false`` means, and why the commands warn about it: the issue's reproduction."""
    address, _, strangers, _ = asyncio.run(_embedded(toy_env, tmp_path, tls=False))
    assert address.startswith("tcp://")
    assert strangers["scheduler: plain tcp client"] == f"ran as {getpass.getuser()}"
    assert any(outcome.startswith("answered") for what, outcome in strangers.items() if "port" in what and "plain" in what)
    assert insecure_warning(True) is None and "tls = false" in insecure_warning(False)


def test_cluster_status_and_doctor_warn_about_plain_tcp(tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path)}
    default = run_agi("cluster", "status", "toy", "--apps-path", str(TEST_APPS), env=env)
    assert "warning:" not in default.stderr
    plain = run_agi("cluster", "status", "toy", "--apps-path", str(TEST_APPS), "--set", "cluster.tls=false", env=env)
    assert "warning: [cluster] tls = false: the cluster's ports take plain TCP" in plain.stderr
    doctor = run_agi("doctor", "toy", "--apps-path", str(TEST_APPS), "--set", "cluster.tls=false", "--json", env=env)
    [warning] = json.loads(doctor.stdout)["warnings"]
    assert "can run code as you" in warning
