"""GPUs across real hosts (the rig): h1 has a simulated GPU (declared, with numba's CUDA simulator in
its workers' environment), h2 has none.

- ``agi install`` with the rapids bit gives h1 the app's ``gpu`` extra and h2 nothing of it (a tiny
  local wheel stands in for numba-cuda / cudf-cu12, through the real lock, wheelhouse and upload);
- a run places the partitions that need a GPU on h1, where the numba.cuda kernel runs, and records
  the CPU fallback on h2 (``no GPU on h2``);
- ``rapids = "require"`` fails before anything runs, naming h2.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv
from agi_core.base.errors import PlanError
from agi_core.install.artifacts import uv_binary
from tests.conftest import ROOT

pytestmark = pytest.mark.rig

FAKE = "agi-fake-cuda"  # the stand-in for the app's real gpu extra
VENV = "/root/.agi/venvs/gpu_toy"


def fake_gpu_wheel(folder: Path) -> Path:
    """A real wheel, built with uv, of a package that only says it is there."""
    project = folder / "project"
    (project / "src" / "agi_fake_cuda").mkdir(parents=True)
    (project / "src" / "agi_fake_cuda" / "__init__.py").write_text("WHAT = 'stands in for numba-cuda / cudf-cu12'\n")
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "{FAKE}"\nversion = "1.0"\n[build-system]\nrequires = ["hatchling"]\n'
        'build-backend = "hatchling.build"\n[tool.hatch.build.targets.wheel]\npackages = ["src/agi_fake_cuda"]\n')
    links = folder / "links"
    subprocess.run([str(uv_binary()), "build", "-q", "--wheel", "-o", str(links), str(project)], check=True)
    return links


@pytest.fixture(scope="module")
def gpu_app(rig, tmp_path_factory):
    """A copy of the gpu_toy app whose gpu extra is the fake wheel, installed on h1 and h2 with the
    rapids bit; the install report; and the settings that reach them."""
    tmp = tmp_path_factory.mktemp("gpu-rig")
    apps = tmp / "apps"
    shutil.copytree(ROOT / "tests" / "apps" / "gpu_toy_project", apps / "gpu_toy_project",
                    ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = apps / "gpu_toy_project" / "pyproject.toml"
    pyproject.write_text(re.sub(r'gpu = \[.*\]', f'gpu = ["{FAKE}==1.0"]', pyproject.read_text()))
    links = fake_gpu_wheel(tmp)
    h1, h2 = rig.hosts[:2]
    cluster = {
        "ssh": {"user": "root", "key": str(rig.client_key), "known_hosts": str(rig.known_hosts), "connect_timeout": 3},
        "scheduler": f"{h1.ip}:8786",
        "workers": {h1.ip: {"count": 1, "capabilities": ["gpu"], "env": {"NUMBA_ENABLE_CUDASIM": "1"}}, h2.ip: 1},
        "workers_data_path": str(tmp / "share"),
        "install": {"find_links": [str(links)]},
        "dask": {"dashboard_port": None, "tcp_timeout": 12, "connect_timeout": 5, "start_timeout": 60},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp / "state"))  # no warm cluster, no GPUs remembered from elsewhere
        rig.reset()
        for host in (h1, h2):
            host.run(f"rm -rf {VENV}")
        env = AgiEnv(app="gpu_toy", apps_path=apps)
        report = asyncio.run(AGI.install(env, cluster=cluster, modes_enabled="dr"))
        yield env, report, cluster


def test_install_gives_the_gpu_extra_to_the_gpu_host_only(gpu_app, rig_hosts):
    _, report, _ = gpu_app
    h1, h2 = rig_hosts.hosts[:2]
    by_host = {h.host: h for h in report.hosts}
    assert all(h.ok for h in report.hosts), [(h.host, h.cause) for h in report.hosts]
    assert by_host[h1.ip].gpu_libraries["numba_cuda"] is True  # numba.cuda works there: on the simulator
    assert by_host[h2.ip].gpu_libraries == {}  # never asked on a host without a GPU
    listed = {h.name: h.run(f"{VENV}/bin/python -m pip list --format=json 2>/dev/null || "
                            f"/root/.agi/bin/uv pip list --python {VENV}/bin/python --format=json").stdout for h in (h1, h2)}
    names = {name: {p["name"].lower() for p in json.loads(text)} for name, text in listed.items()}
    assert FAKE in names["h1"] and "numba" in names["h1"]
    assert FAKE not in names["h2"] and "numba" in names["h2"]
    # h2 never received it: its wheelhouse and lock lack it
    assert "agi_fake_cuda" not in h2.run("ls /root/.agi/wheelhouse").stdout
    assert FAKE not in h2.run("cat /root/.agi/locks/gpu_toy.txt").stdout
    assert f"{FAKE}==1.0" in h1.run("cat /root/.agi/locks/gpu_toy.txt").stdout


def test_gpu_partitions_run_on_the_gpu_host_and_the_other_records_its_cpu_fallback(gpu_app, rig_hosts):
    env, _, cluster = gpu_app
    result = asyncio.run(AGI.run(env, mode="dr", cluster=cluster, n=6, need_gpu=[0, 3]))
    record = json.loads(result.manifest.read_text())
    parts = {p["id"]: p for p in record["partitions"]}
    for pid in ("p0", "p3"):
        assert (parts[pid]["host"], parts[pid]["kernel"], parts[pid]["device"]) == ("h1", "gpu", "cuda:0 (simulator)")
    on_h2 = [p for p in parts.values() if p["host"] == "h2"]
    assert on_h2, "h2 ran nothing"
    assert {(p["kernel"], p["device"]) for p in on_h2} == {("python", "cpu")}
    assert all(p["note"].startswith("no GPU on h2: ran the CPU kernels") for p in on_h2), [p["note"] for p in on_h2]
    assert result.value == sum(sum(range(64)) * (i + 1) for i in range(6))
    workers = {w["host"]: w["capabilities"] for w in record["workers"].values()}
    assert (workers["h1"]["gpus"], workers["h1"]["gpu_simulated"], workers["h1"]["numba_cuda"]) == (1.0, True, True)
    assert (workers["h2"]["gpus"], workers["h2"]["gpu_models"], workers["h2"]["gpu_simulated"]) == (0.0, [], False)


def test_rapids_require_fails_before_anything_runs_naming_the_host_without_a_gpu(gpu_app, rig_hosts):
    env, _, cluster = gpu_app
    h2 = rig_hosts.hosts[1]
    runs = Path(cluster["workers_data_path"]) / "runs" / "gpu_toy"
    before = sorted(runs.iterdir()) if runs.exists() else []
    with pytest.raises(PlanError) as info:
        asyncio.run(AGI.run(env, mode="dr", cluster={**cluster, "rapids": "require"}, n=2))
    assert f"no GPU on {h2.ip} (1 worker)" in str(info.value) and rig_hosts.hosts[0].ip not in str(info.value)
    assert (sorted(runs.iterdir()) if runs.exists() else []) == before  # no run folder: nothing started
    assert "distributed" not in h2.run("pgrep -af 'distributed[.]cli' || true").stdout
