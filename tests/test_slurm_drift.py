"""Environment drift on the single-node Slurm (issue 24 item 6, the shared-folder install): every
job runs the one venv `agi install` built on the shared filesystem. Built from older code (a copy
of agi_core's source tree with one line more, installed by a process that runs that copy), its
workers are refused at the start, naming the host and the fix; with ``[cluster] install = "auto"``
the run rebuilds that venv once from the login node (this machine), the workers of both jobs
restart on it and do the work."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agi_core import AGI, AgiEnv, AgiError
from agi_core.base.events import Notice
from agi_core.install.code_hash import agi_code_hash
from agi_core.install.installed_hash import FINGERPRINT_FILE
from agi_core.install.source import agi_source_dir
from tests.conftest import TEST_APPS
from tests.slurm_fixtures import slurm  # noqa: F401 - the session's Slurm
from tests.test_slurm import dask_workers_left, slurm_cluster, warm_dir  # noqa: F401 - warm_dir: this test's own state folder

N = 8
#: the line the older code has more, in a module every worker imports for the join check: each
#: process that imports it leaves a file named after its pid in the folder it names
OLDER_LINE = "__import__('pathlib').Path({marks!r}, str(__import__('os').getpid())).touch()  # older code (test_slurm_drift)\n"


def _older_tree(tmp_path: Path, marks: Path) -> Path:
    """A copy of agi_core's source tree whose code differs from this one's by `OLDER_LINE`."""
    source, copy = agi_source_dir(), tmp_path / "older-source"
    shutil.copytree(source / "agi_core", copy / "agi_core", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(source / name, copy / name)
    module = copy / "agi_core" / "install" / "installed_hash.py"
    module.write_text(module.read_text() + OLDER_LINE.format(marks=str(marks)))
    return copy


def _install_older(tmp_path: Path, cluster: dict) -> tuple[Path, Path]:
    """`agi install` of the toy app into the shared venv by a process running the older tree:
    (the venv, the folder where the older code leaves its marks)."""
    marks = tmp_path / "older-code-imported"
    marks.mkdir()
    copy = _older_tree(tmp_path, marks)
    script = ("import asyncio, json, sys, agi_core; from agi_core import AGI, AgiEnv; assert agi_core.__file__.startswith(sys.argv[3]); "
              "asyncio.run(AGI.install(AgiEnv(app='toy', apps_path=sys.argv[1]), cluster=json.loads(sys.argv[2])))")
    done = subprocess.run([sys.executable, "-c", script, str(TEST_APPS), json.dumps(cluster), str(copy)], cwd=copy,
                          env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    venv = tmp_path / "agi" / "venvs" / "toy"
    assert json.loads((venv / FINGERPRINT_FILE).read_text())["agi_hash"] != agi_code_hash()  # other code than this manager's
    return venv, marks


@pytest.fixture(autouse=True)
def jobs_run_the_venv(tmp_path, monkeypatch):
    """A job runs ``python -m distributed.cli.dask_worker`` in the folder it was submitted from,
    with the submitter's environment: from the repository, or with it on ``PYTHONPATH``, its
    workers would import this checkout's agi_core, not the venv's (and rightly say so)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)


def _cluster(tmp_path: Path, **install: object) -> dict:
    """Two jobs running the shared venv (no ``[cluster.slurm] python``); the run starts with both."""
    cluster = slurm_cluster(tmp_path, python=None)
    return {**cluster, "min_workers": "all", "install": {**cluster["install"], **install}}  # type: ignore[dict-item]


def test_workers_of_an_older_shared_venv_are_refused_naming_the_host_and_the_fix(slurm, tmp_path):  # noqa: F811
    cluster = _cluster(tmp_path)
    venv, _ = _install_older(tmp_path, cluster)
    before = (venv / FINGERPRINT_FILE).read_text()
    with pytest.raises(AgiError) as refused:
        asyncio.run(AGI.run(AgiEnv(app="toy", apps_path=TEST_APPS), mode="d", cluster=cluster, n=N, use_cache=False))
    error = refused.value
    assert "2 worker(s) run other code than this manager" in error.message, error.message
    assert "slurm (worker slurm-0): agi_core code" in error.message and "slurm (worker slurm-1): agi_core code" in error.message
    assert "agi install toy (hosts: 127.0.0.1)" in (error.fix or "") and 'install = "auto"' in (error.fix or ""), error.fix
    assert (venv / FINGERPRINT_FILE).read_text() == before  # nothing was installed
    assert slurm.queue() == [] and not dask_workers_left()


def test_install_auto_rebuilds_the_shared_venv_once_and_the_restarted_workers_do_the_work(slurm, tmp_path):  # noqa: F811
    cluster = _cluster(tmp_path, auto=True)
    venv, marks = _install_older(tmp_path, cluster)
    by_install = set(marks.iterdir())  # the installing process imported the older code too
    ran = tmp_path / "ran"  # the toy app's mark_dir: partition i writes the pid of its worker process to running-p<i>
    ran.mkdir()
    events: list = []
    result = asyncio.run(AGI.run(AgiEnv(app="toy", apps_path=TEST_APPS), mode="d", cluster=cluster, n=N, sleep=0.2,
                                 mark_dir=str(ran), use_cache=False, on_event=events.append))
    assert result.status == "ok" and result.value == sum(i * i for i in range(N))
    record = json.loads(result.manifest.read_text())
    assert sorted(p["id"] for p in record["partitions"]) == sorted(f"p{i}" for i in range(N))  # each exactly once
    assert {p["status"] for p in record["partitions"]} == {"ok"}
    # one rebuild for the workers of both jobs, from the login node, said as it happens and recorded
    drifted = [e.text for e in events if isinstance(e, Notice) and "other code than this manager" in e.text]
    assert len(drifted) == 1, drifted
    assert "2 worker(s) joined with other code than this manager (agi_core code" in drifted[0]
    assert "installing the shared venv from 127.0.0.1 before the run starts" in drifted[0]
    [installed] = record["cluster"]["installed"]
    assert installed.startswith(tuple(f"127.0.0.1: installed, for worker(s) {names}, which ran agi_core code"
                                      for names in ("slurm-0, slurm-1", "slurm-1, slurm-0"))), installed
    assert json.loads((venv / FINGERPRINT_FILE).read_text())["agi_hash"] == agi_code_hash()  # the venv has this manager's code
    [module] = venv.glob("lib/python*/site-packages/agi_core/install/installed_hash.py")
    assert "older code" not in module.read_text()
    # the workers that joined first imported the older code; the processes that did the work never did
    older = {int(mark.name) for mark in set(marks.iterdir()) - by_install}
    workers = {int((ran / f"running-p{i}").read_text()) for i in range(N)}
    assert len(older) == 2 and workers and not older & workers, (older, workers)
    assert slurm.queue() == [] and not dask_workers_left()
