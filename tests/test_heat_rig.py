"""The heat example app (a DAG with a result cache) across the rig's 3 hosts, modes 4 and 5.

One share for the module: the first cluster run computes every partition and its workers store the
results in ``<share>/cache/heat/``; the later runs find them there.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agi_core import AGI, AgiEnv
from agi_core.cache.store import CacheStore
from agi_core.provenance.store import read_record
from tests.conftest import ROOT
from tests.test_cluster_rig import cluster_for

pytestmark = pytest.mark.rig

APPS = ROOT / "apps"
# 1 setup + 6 sims + 2 analyses + 1 summary; alpha * t_end >= 0.15 reaches the default fit window
SMALL = {"sizes": [16, 24], "alphas": [1.0, 1.5, 2.0], "t_end": 0.2, "samples": 50}
FILES = ("heat_summary.png", "heat_summary.csv")


@pytest.fixture(scope="module")
def heat_installed(rig, tmp_path_factory) -> Iterator[AgiEnv]:
    """The heat app installed on every rig host (once for this module); no warm cluster from elsewhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
        rig.reset()
        env = AgiEnv(app="heat", apps_path=APPS)
        report = asyncio.run(AGI.install(env, cluster=cluster_for(rig, "/tmp")))
        assert all(h.ok for h in report.hosts), report
        yield env


@pytest.fixture(scope="module")
def heat_share(tmp_path_factory) -> Path:
    """The cluster share of every run of this module (they build on each other's cache)."""
    return tmp_path_factory.mktemp("heat-share")


def assert_nothing_left_running(rig) -> None:
    for host in rig.hosts:
        if host.is_running():
            left = host.run("pgrep -af 'distributed[.]cli' || true").stdout.strip()
            assert not left, f"{host.name} still runs: {left}"


@pytest.fixture
def env(heat_installed, rig_hosts) -> Iterator[AgiEnv]:
    yield heat_installed
    assert_nothing_left_running(rig_hosts)  # after any test


def run(env, rig, share, mode, **args):
    return asyncio.run(AGI.run(env, mode=mode, cluster=cluster_for(rig, share), **args))


@pytest.fixture(scope="module")
def first(heat_installed, rig, heat_share):
    """The sweep in mode 4 on an empty share: everything computed on the hosts."""
    rig.reset()
    result = run(heat_installed, rig, heat_share, 4, **SMALL)
    assert_nothing_left_running(rig)  # checked here: each test's rig reset would hide it
    return result


def partitions(result, mode: int) -> dict[str, Any]:
    """The run's record lines by partition id, each partition of the plan exactly once."""
    record = read_record(result.manifest)
    assert record.mode.value == mode
    ids = [p.id for p in record.partitions]
    assert len(ids) == len(set(ids)), f"a partition recorded twice: {sorted(ids)}"
    assert sorted(ids) == sorted(p.id for p in result.plan.partitions)
    return {p.id: p for p in record.partitions}


def keys(parts: dict[str, Any]) -> dict[str, str]:
    return {pid: p.cache_key for pid, p in parts.items()}


def differences(a: Any, b: Any, where: str = "value") -> list[str]:
    """Where two results differ: floats and arrays within a relative 1e-12 (the hosts run the manager's pinned
    NumPy, so they are in fact bitwise equal; the tolerance only forgives a change of summation order), the rest exactly."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):  # a run's results are a read-only Mapping (`ResultsView`)
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}[{k!r}]")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=0):
            return [f"{where}: arrays differ (shapes {a.shape}, {b.shape})"]
        return []
    if isinstance(a, float) and isinstance(b, float):
        return [] if (math.isnan(a) and math.isnan(b)) or np.isclose(a, b, rtol=1e-12, atol=0) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def test_mode_4_runs_the_dag_across_hosts_like_mode_0(env, rig_hosts, heat_share, first, tmp_path):
    assert first.status == "ok"
    parts = partitions(first, 4)
    assert len(parts) == 1 + 6 + 2 + 1
    assert all(p.status == "ok" and p.cache == "stored" and p.worker and p.retries == 0 for p in parts.values()), \
        {pid: (p.status, p.cache, p.worker, p.retries) for pid, p in parts.items()}
    hosts = {p.host for p in parts.values()}
    assert len(hosts) >= 2 and hosts <= {h.name for h in rig_hosts.hosts}, hosts  # really spread over the hosts
    assert sorted(parts["summary"].outputs) == sorted(FILES) and not any(p.outputs for pid, p in parts.items() if pid != "summary")
    # the worker that computed each partition stored it on the share
    entries = {info.header["partition"]: info.header for info in CacheStore.for_app(heat_share, "heat").entries()}
    assert sorted(entries) == sorted(parts)
    for pid, p in parts.items():
        assert entries[pid]["key"] == p.cache_key and entries[pid]["worker"] == p.worker
        assert entries[pid]["run_id"] == first.run_id
    for name in FILES:
        assert (first.out_dir / name).stat().st_size > 0
    assert first.value["problems"] == [] and first.value["files"] == list(FILES)

    local = asyncio.run(AGI.run(env, mode=0, cluster={"workers_data_path": str(tmp_path / "share0")}, **SMALL))
    assert local.status == "ok"
    assert not differences(first.value, local.value), "\n".join(differences(first.value, local.value))
    assert not differences(first.results, local.results, "results"), "\n".join(differences(first.results, local.results, "results"))


def test_an_unchanged_rerun_computes_nothing(env, rig_hosts, heat_share, first):
    again = run(env, rig_hosts, heat_share, 4, **SMALL)
    assert again.status == "ok" and again.run_id != first.run_id
    parts = partitions(again, 4)
    assert all(p.cache == "hit" and p.status == "cached" for p in parts.values()), \
        {pid: (p.status, p.cache) for pid, p in parts.items()}
    assert keys(parts) == keys(partitions(first, 4))
    assert not differences(again.value, first.value), "\n".join(differences(again.value, first.value))
    for name in FILES:  # the cached summary brought its files back
        assert (again.out_dir / name).read_bytes() == (first.out_dir / name).read_bytes()


def test_a_new_title_in_mode_5_redraws_only_the_summary(env, rig_hosts, heat_share, first):
    retitled = run(env, rig_hosts, heat_share, 5, **SMALL, title="heat on the rig")
    assert retitled.status == "ok"
    parts = partitions(retitled, 5)
    before = keys(partitions(first, 4))
    assert {pid for pid, key in keys(parts).items() if key != before[pid]} == {"summary"}
    summary = parts.pop("summary")
    assert summary.status == "ok" and summary.cache == "stored" and summary.host in {h.name for h in rig_hosts.hosts}
    assert all(p.cache == "hit" and p.status == "cached" for p in parts.values()), \
        {pid: (p.status, p.cache) for pid, p in parts.items()}
    assert retitled.value["title"] == "heat on the rig"
    assert not differences({**retitled.value, "title": None}, {**first.value, "title": None})
    for name in FILES:
        assert (retitled.out_dir / name).stat().st_size > 0
    assert (retitled.out_dir / "heat_summary.csv").read_bytes() == (first.out_dir / "heat_summary.csv").read_bytes()
    assert (retitled.out_dir / "heat_summary.png").read_bytes() != (first.out_dir / "heat_summary.png").read_bytes()
