"""The wheel `agi install` ships to every host holds agi_core and nothing of the repository's test
rigs (`agi_testkit/`: the multi-host rig, a single-node Slurm)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agi_core.install.artifacts import uv_binary

from .conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """agi_core's wheel, built as `agi install` builds it (uv build), from a copy of the checkout
    (a build writes build/ and *.egg-info beside the sources); offline: with this environment's setuptools."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("agi_core", "agi_testkit"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    built = subprocess.run([str(uv_binary()), "build", "-q", "--wheel", "--no-build-isolation", "--python", sys.executable,
                            "-o", str(tmp / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    [path] = (tmp / "dist").glob("*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_agi_core_and_no_test_rig(wheel):
    names = wheel.namelist()
    assert {name.split("/")[0] for name in names} == {"agi_core", "agi_orchestrator-0.1.0.dist-info"}
    assert [name for name in names if "testing/" in name or "testkit" in name] == []
    # what workers and the UI need is there
    assert {"agi_core/executors/worker.py", "agi_core/install/code_hash.py", "agi_core/ui/templates/runs.html"} <= set(names)


def test_no_entry_point_of_the_wheel_names_a_test_rig(wheel):
    [entry_points] = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "agi = agi_core.cli:main" in text
    assert "testing" not in text and "testkit" not in text


def test_the_test_rigs_are_found_from_the_repository_root():
    """Tests (pytest's ``pythonpath``), benchmarks and scripts/rig import agi_testkit from the checkout."""
    import agi_testkit.rig

    assert Path(agi_testkit.rig.__file__).resolve().parent == ROOT / "agi_testkit"
    rig = subprocess.run([str(ROOT / "scripts" / "rig"), "--help"], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert rig.returncode == 0 and "usage" in rig.stdout.lower(), rig.stderr[-2000:]
