"""Start-up stays lean: a mode-0 run imports no cluster, SSH or plotting library, and printing its
outcome to a pipe loads no rich (benchmarks/startup.py measures the whole process)."""

import subprocess
import sys

from tests.conftest import ROOT, TEST_APPS

#: what a run of this machine on a CPU does not need: GPU probing, remembered GPU facts and the GPU
#: classes, the events of clusters, installs and pipeline steps, did-you-mean, and multiprocessing
#: (mode 0 starts no process)
LAZY = ("agi_core.gpus.probe", "agi_core.gpus.facts", "agi_core.gpus.libraries", "agi_core.gpus.model",
        "agi_core.base.cluster_events", "difflib", "multiprocessing")
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
    print("CACHE:", sorted(m for m in sys.modules if m.startswith(("agi_core.cache", "agi_core.executors.worker_cache"))))
    print("ELSEWHERE:", sorted(m for m in sys.modules if m in {LAZY!r} or m.split(".")[0] in {LAZY!r}))
"""


def test_mode_0_run_imports_nothing_heavy(share):
    out = subprocess.run([sys.executable, "-c", SCRIPT.replace("{share}", str(share))], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY: []" in out.stdout, out.stdout
    assert "MANAGER: []" in out.stdout, out.stdout  # no cluster backend, SSH or install code for a local run
    assert "ELSEWHERE: []" in out.stdout, out.stdout
    assert list(share.glob("runs/toy/*/manifest.json"))


def test_a_run_without_the_cache_does_not_load_the_cache_package(share):
    out = subprocess.run([sys.executable, "-c", SCRIPT.replace("{share}", str(share)), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # the benchmarked start-up (benchmarks/startup.py) pays none of it, nor the workers' side of the cache
    assert "CACHE: []" in out.stdout, out.stdout


PAUSE = """
import gc
from agi_core.cli.loading_gc import LoadingCollections
loading = LoadingCollections()
paused = not gc.isenabled()
loading.resume()
resumed, frozen = gc.isenabled(), gc.get_freeze_count() > 0
gc.disable()
again = LoadingCollections()
again.resume()  # the collector was off before this pause: it stays off
print(paused, resumed, frozen, gc.isenabled())
"""


def test_loading_pauses_the_collector_and_resume_restores_it():
    out = subprocess.run([sys.executable, "-c", PAUSE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "False"]


MAIN = f"""
import gc, sys
from agi_core.cli.main import main
collected = []
gc.callbacks.append(lambda phase, info: phase == "start" and collected.append("agi_core.agi" in sys.modules))
sys.argv = ["agi", "--apps-path", {str(TEST_APPS)!r}, "run", "toy", "--set", "n=1", "--set", 'cluster.workers_data_path="{{share}}"']
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("ENABLED:", gc.isenabled(), "BEFORE_LOADED:", collected.count(False), "AFTER:", collected.count(True))
"""


def test_agi_loads_its_command_without_collecting_then_runs_it_with_the_collector_on(share):
    out = subprocess.run([sys.executable, "-c", MAIN.replace("{share}", str(share))], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[words.index("ENABLED:") + 1] == "True", out.stdout
    assert words[words.index("BEFORE_LOADED:") + 1] == "0", out.stdout  # no collection while `run` and AGI loaded
    assert int(words[words.index("AFTER:") + 1]) > 0, out.stdout  # the run itself collects as usual
    assert list(share.glob("runs/toy/*/manifest.json"))
