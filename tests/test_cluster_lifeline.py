"""The embedded cluster's worker processes die with a SIGKILLed manager (warm clusters are another matter)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_APPS

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def survivors(pids: set[int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def kill_leftovers(pids: set[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigkilled_run_takes_its_workers_with_it(share, tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    manager = subprocess.Popen(
        [sys.executable, "-m", "agi_core.cli", "--apps-path", str(TEST_APPS), "run", "toy", "--mode", "d", "--set", "n=40",
         "--set", "sleep=0.5", "--set", "write_files=true", "--set", f'cluster.workers_data_path="{share}"'],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(share.glob("runs/toy/*/out/part-*.txt"))) < 2:
            time.sleep(0.05)
        pids = {int(path.read_text().split()[1]) for path in share.glob("runs/toy/*/out/part-*.txt")}
        assert pids, "no partition ran"
        assert manager.pid not in pids  # the partitions ran in worker processes
        manager.kill()
        manager.wait()
        assert not survivors(pids, within=5), "worker processes survived their SIGKILLed manager"
    finally:
        manager.kill()
        kill_leftovers(pids)


def test_a_worker_holding_the_gil_dies_with_its_manager(tmp_path):
    """Dask's own lifeline (a pipe watched by a thread) needs the GIL; a partition stuck in C
    code holding it (here a regular expression that backtracks for minutes) does not release it."""
    marker = tmp_path / "worker.pid"
    script = tmp_path / "manager.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, os, re

        from agi_core.cluster import backend_class, cluster_spec
        from agi_core.cluster.client import open_client
        from agi_core.base.modes import Mode
        from agi_core.settings import ClusterSettings


        def hold_the_gil(path):
            with open(path + ".tmp", "w") as out:
                out.write(str(os.getpid()))
            os.replace(path + ".tmp", path)
            return re.match(r"(a+)+$", "a" * 40 + "b")


        async def main():
            spec = cluster_spec(ClusterSettings.model_validate({{"workers": {{"127.0.0.1": 1}}}}), Mode.CLUSTER)
            async with backend_class("inprocess")(spec) as cluster:
                client = await open_client(cluster.address, security=cluster.security())
                await client.submit(hold_the_gil, {str(marker)!r})


        if __name__ == "__main__":
            asyncio.run(main())
    """))
    manager = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")})
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not marker.exists() and manager.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), "the partition never started"
        pids = {int(marker.read_text())}
        time.sleep(0.3)  # well inside the regular expression
        manager.kill()
        manager.wait()
        assert not survivors(pids, within=5), "the worker survived its SIGKILLed manager"
    finally:
        manager.kill()
        kill_leftovers(pids)
