"""A manager killed by SIGKILL: its record reads `abandoned` and keeps what finished; the pool's
worker processes die with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agi_core.provenance import RunStore
from tests.conftest import ROOT, TEST_APPS

SCRIPT = """
import asyncio, sys
from agi_core import AGI, AgiEnv
asyncio.run(AGI.run(AgiEnv(app="toy", apps_path=sys.argv[1]), mode=sys.argv[3], n=48, sleep=0.2,
                    cluster={{"workers_data_path": sys.argv[2], "workers": {{"127.0.0.1": 2}}}}))
"""


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped


def _wait_for_logged_partitions(share: Path, timeout: float = 30) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = [p for p in share.glob("runs/toy/*/partitions.jsonl") if p.stat().st_size]
        if logs:
            return logs[0].parent
        time.sleep(0.1)
    raise AssertionError("the run never logged a finished partition")


@pytest.mark.parametrize("mode", ["p", "0"])
def test_sigkilled_manager_leaves_an_abandoned_record_with_its_finished_partitions(share, mode):
    manager = subprocess.Popen([sys.executable, "-c", SCRIPT.format(), str(TEST_APPS), str(share), mode], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = _wait_for_logged_partitions(share)
        workers = _children(manager.pid)
        if mode == "p":
            assert len(workers) == 2  # the two slot processes
        os.kill(manager.pid, signal.SIGKILL)
        manager.wait(timeout=10)
    finally:
        if manager.poll() is None:
            manager.kill()
    deadline = time.time() + 10
    while time.time() < deadline and [pid for pid in workers if _alive(pid)]:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "pool worker processes outlived their manager"

    record = RunStore(share).find(run_dir.name)
    assert record.status == "abandoned"
    assert "manager" in (record.error or "") and str(manager.pid) in (record.error or "")
    done = [p for p in record.partitions if p.status == "ok"]
    assert 0 < len(done) < 48 and record.totals.ok == len(done)
    assert record.totals.not_run == 48 - len(done)
    listed = RunStore(share).list("toy")
    assert [r.status for r in listed] == ["abandoned"]


TETHER = """
import asyncio, sys
from agi_core.ssh import LocalSession
async def main():
    await LocalSession("127.0.0.1").tether(f"cat > /dev/null; touch {sys.argv[1]}")
    print("ready", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_a_tethered_command_acts_when_its_holder_is_sigkilled(tmp_path):
    """The watch that stops a run's launched processes when their manager dies (here: this machine's shell)."""
    fired = tmp_path / "fired"
    holder = subprocess.Popen([sys.executable, "-c", TETHER, str(fired)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        assert not fired.exists()  # held: nothing happens
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
    deadline = time.time() + 10
    while time.time() < deadline and not fired.exists():
        time.sleep(0.05)
    assert fired.exists()
