"""Backends as plugins: a third party's package, built from docs/backends.md and installed into a
fresh virtual environment, runs an app with ``[cluster] backend = "theirs"`` (no agi edit); its
options are checked like agi's own; the Slurm backend's missing extra is named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from agi_core import AgiError
from tests.conftest import ROOT, TEST_APPS
from tests.test_docs import read_page

PAGE = ROOT / "docs" / "backends.md"
SETTINGS = """[args]
n = 6

[cluster]
backend = "theirs"
workers = { "127.0.0.1" = 2 }

[cluster.theirs]
%s = "1GB"
job_prefix = "nightly"
"""


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv whose only package of its own is the docs' ``their-backend`` (built and installed
    by uv, offline); everything else comes from this test environment's site-packages, on a path
    after the venv's own, so agi_core is this tree and its metadata is what it is here."""
    from agi_core.install.artifacts import uv_binary

    root = tmp_path_factory.mktemp("plugin")
    for name, text in read_page(PAGE).files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_agi_test_base.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    done = subprocess.run([str(uv_binary()), "pip", "install", "--offline", "--no-deps", "--no-build-isolation",
                           "--python", str(python), str(root / "their_backend")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return venv


def run_in(venv: Path, tmp_path: Path, key: str = "memory_limit") -> subprocess.CompletedProcess[str]:
    """`agi run toy --mode d` in ``venv``, the app's settings selecting the plugin's backend."""
    apps = tmp_path / "apps"
    shutil.copytree(TEST_APPS / "toy_project", apps / "toy_project", ignore=shutil.ignore_patterns("__pycache__"))
    (apps / "toy_project" / "app_settings.toml").write_text(SETTINGS % key)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "200"}
    return subprocess.run([str(venv / "bin" / "python"), "-m", "agi_core.cli", "--apps-path", str(apps), "run", "toy", "--mode", "d",
                           "--set", f'cluster.workers_data_path="{tmp_path / "share"}"'],
                          cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def test_a_third_party_backend_runs_an_app_without_an_agi_change(plugin_venv, tmp_path):
    done = run_in(plugin_venv, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [manifest] = (tmp_path / "share").glob("runs/toy/*/manifest.json")
    record = json.loads(manifest.read_text())
    assert record["status"] == "ok" and record["cluster"]["backend"] == "theirs"
    # each partition names the job of the worker that ran it, through the backend's job_id_env
    assert {(p["worker"], p["job_id"]) for p in record["partitions"]} <= {
        ("127.0.0.1-0", "nightly-127.0.0.1-0"), ("127.0.0.1-1", "nightly-127.0.0.1-1")}
    assert len(record["partitions"]) == 6


def test_the_plugins_options_are_checked_naming_the_file_and_the_key(plugin_venv, tmp_path):
    done = run_in(plugin_venv, tmp_path, key="memory_limt")
    assert done.returncode != 0
    assert "app_settings.toml:9: unknown key 'cluster.theirs.memory_limt'" in done.stderr
    assert "did you mean 'cluster.theirs.memory_limit'?" in done.stderr
    assert not (tmp_path / "share").exists()  # refused before anything ran


def test_a_table_of_a_backend_that_is_not_installed_is_an_unknown_key():
    from agi_core.settings import ClusterSettings

    with pytest.raises(ValueError, match="theirs"):
        ClusterSettings.model_validate({"backend": "ssh", "theirs": {"memory_limit": "1GB"}})


def test_a_missing_slurm_extra_is_named(monkeypatch):
    from agi_core import Mode
    from agi_core.cluster import spec_for
    from agi_core.cluster.slurm import SlurmCluster
    from agi_core.settings import ClusterSettings

    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # what Python does when it is not installed: ImportError
    spec = spec_for(ClusterSettings.model_validate({"backend": "slurm"}), Mode.CLUSTER, "toy")
    assert spec.options["jobs"] == 1 and SlurmCluster.options_of(ClusterSettings.model_validate({"backend": "slurm"})).jobs == 1
    with pytest.raises(AgiError, match="needs dask-jobqueue") as info:
        SlurmCluster(spec).job_script()
    assert info.value.fix is not None and "pip install 'agi-orchestrator[slurm]'" in info.value.fix


def test_the_ui_form_shows_and_saves_the_selected_backends_options(apps_copy):
    from agi_core import AgiEnv
    from agi_core.ui.settings_form import form_fields, save_form

    settings = apps_copy / "toy_project" / "app_settings.toml"
    settings.write_text(settings.read_text().replace("[cluster]\n", '[cluster]\nbackend = "slurm"\n') + "\n[cluster.slurm]\njobs = 2\n")
    fields = {f.key: f for f in form_fields(AgiEnv(app="toy", apps_path=apps_copy))}
    assert fields["cluster.backend"].value == "slurm" and "ssh" in fields["cluster.backend"].kind
    jobs, memory, partition = fields["cluster.slurm.jobs"], fields["cluster.slurm.memory"], fields["cluster.slurm.partition"]
    assert (jobs.value, jobs.kind, jobs.source) == (2, "integer", "app settings") and jobs.help == "worker jobs submitted"
    assert (memory.value, memory.source) == ("2GB", "default") and partition.kind == "text"
    outcome = save_form(AgiEnv(app="toy", apps_path=apps_copy), {"cluster.slurm.jobs": "3", "cluster.slurm.memory": "2GB"})
    assert outcome.saved == ["cluster.slurm.jobs"], outcome
    assert AgiEnv(app="toy", apps_path=apps_copy).settings().cluster.worker_map()["slurm"].count == 3
