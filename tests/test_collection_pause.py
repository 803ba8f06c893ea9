"""Garbage collection around a run (`agi_core.base.collection_pause`): paused while the run makes
what it keeps, as it was afterwards, and what a script still holds at its exit frozen first."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from agi_core.base.collection_pause import making_long_lived, thaw
from tests.conftest import ROOT, TEST_APPS


def test_the_pause_ends_as_it_began_even_when_the_block_fails():
    assert gc.isenabled()
    with pytest.raises(ValueError), making_long_lived():
        assert not gc.isenabled()
        raise ValueError("plan() failed")
    assert gc.isenabled()
    thaw()
    gc.disable()
    try:
        with making_long_lived():
            pass
        assert not gc.isenabled()  # a collector the caller had paused stays paused
    finally:
        gc.enable()
        thaw()


def _run_script(tmp_path, runs: int) -> tuple[list[str], list[str]]:
    # atexit runs the last registered first: the probe, registered before the runs, sees what their handler did
    script = f"""
import asyncio, atexit, gc, sys
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
from agi_core import AGI, AgiEnv
env = AgiEnv(app="noop", apps_path={str(TEST_APPS)!r})
for _ in range({runs}):
    result = asyncio.run(AGI.run(env, mode=0, n=50, cluster={{"workers_data_path": {str(tmp_path)!r}}}))
print("frozen after the runs:", gc.get_freeze_count() > 0)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    return lines[-2].split(), lines[-1].split()


def test_a_script_that_ran_freezes_what_it_holds_at_exit(tmp_path):
    after, at_exit = _run_script(tmp_path, 2)
    assert after[-1] == "False"  # the runs gave back what they froze
    assert at_exit[-1] == "True"  # and what was alive at exit was frozen before Python's last collection
