"""Start-up stays lean: a mode-0 run imports no cluster, SSH or plotting library, and printing its
outcome to a pipe loads no rich (benchmarks/startup.py measures the whole process)."""

import subprocess
import sys

from tests.conftest import ROOT, TEST_APPS

HEAVY = ("dask", "distributed", "asyncssh", "matplotlib", "pandas", "tomlkit", "rich")

SCRIPT = f"""
import sys
from agi_core.cli.main import cli
try:
    cli(["--apps-path", {str(TEST_APPS)!r}, "run", "toy", "--set", "n=1", "--set",
         'cluster.workers_data_path="{{share}}"', *sys.argv[1:]], prog_name="agi", standalone_mode=False)
finally:
    print("HEAVY:", sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))
    print("MANAGER:", sorted(m for m in sys.modules if m.startswith(("agi_core.cluster", "agi_core.ssh", "agi_core.install"))))
    print("CACHE:", sorted(m for m in sys.modules if m.startswith("agi_core.cache")))
"""


def test_mode_0_run_imports_nothing_heavy(share):
    out = subprocess.run([sys.executable, "-c", SCRIPT.replace("{share}", str(share))], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY: []" in out.stdout, out.stdout
    assert "MANAGER: []" in out.stdout, out.stdout  # no cluster backend, SSH or install code for a local run
    assert list(share.glob("runs/toy/*/manifest.json"))


def test_a_run_without_the_cache_does_not_load_the_cache_package(share):
    out = subprocess.run([sys.executable, "-c", SCRIPT.replace("{share}", str(share)), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "CACHE: []" in out.stdout, out.stdout  # the benchmarked start-up (benchmarks/startup.py) pays none of it
