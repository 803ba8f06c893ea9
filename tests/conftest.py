"""Shared fixtures: a private share per test, the test apps, and the multi-host rig plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.rig_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
TEST_APPS = ROOT / "tests" / "apps"


@pytest.fixture
def share(tmp_path: Path) -> Path:
    """An empty cluster share for one test."""
    path = tmp_path / "share"
    path.mkdir()
    return path


@pytest.fixture
def toy_env():
    from agi_core import AgiEnv

    return AgiEnv(app="toy", apps_path=TEST_APPS)


@pytest.fixture
def apps_copy(tmp_path: Path) -> Path:
    """A writable copy of the test apps (for tests that edit app_settings.toml)."""
    import shutil

    target = tmp_path / "apps"
    shutil.copytree(TEST_APPS, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def run_agi(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `agi` command line in a subprocess (as a user would)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "agi_core.cli", *args], cwd=cwd or ROOT, env=full_env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
