"""How runs end and what they leave on the terminal and the network: SIGTERM is recorded as an
interruption (exit 143), Ctrl-C and clean Dask runs print no tracebacks, a local Dask run binds the
dashboard port it is told (never Dask's default 8787 otherwise), an empty plan is an error unless
the app allows it, and a duplicate id's fix points where the ids come from."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psutil
import pytest

from agi_core import AGI, Partition
from agi_core.base.errors import PlanError
from agi_core.plan import Slot, WorkPlan, build_plan
from agi_core.provenance import RunStore
from tests.conftest import ROOT, TEST_APPS, run_agi

TWO = [Slot("h-0", "h"), Slot("h-1", "h")]


def _start(args: list[str], *, script: bool = False) -> subprocess.Popen[str]:
    """`agi ARGS` (or a Python script) in its own session, as a terminal would run it."""
    command = [sys.executable, "-c", *args] if script else [sys.executable, "-m", "agi_core.cli", *args]
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200"}, start_new_session=True)


def _wait_for_a_logged_partition(share: Path, process: subprocess.Popen[str], timeout: float = 60) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        logs = [p for p in share.glob("runs/toy/*/partitions.jsonl") if p.stat().st_size]
        if logs:
            return logs[0].parent
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the run never logged a finished partition: {process.communicate()[1][-2000:]}")


def _run_toy(share: Path, mode: str, n: int = 400) -> list[str]:
    return ["run", "toy", "--apps-path", str(TEST_APPS), "--mode", mode, "--no-cache", "--set", f"n={n}", "--set", "sleep=0.05",
            "--set", f'cluster.workers_data_path="{share}"', "--set", 'cluster.workers={"127.0.0.1"=2}']


SCRIPT = """
import asyncio, sys
from agi_core import AGI, AgiEnv
asyncio.run(AGI.run(AgiEnv(app="toy", apps_path=sys.argv[1]), mode="p", n=400, sleep=0.05, use_cache=False,
                    cluster={"workers_data_path": sys.argv[2], "workers": {"127.0.0.1": 2}}))
"""


@pytest.mark.parametrize("how", ["agi run", "AGI.run in a script"])
def test_sigterm_stops_the_run_and_records_it_interrupted(share, how):
    process = (_start(_run_toy(share, "p")) if how == "agi run" else
               _start([SCRIPT, str(TEST_APPS), str(share)], script=True))
    run_dir = _wait_for_a_logged_partition(share, process)
    slots = [child.pid for child in psutil.Process(process.pid).children()]
    process.send_signal(signal.SIGTERM)  # what `timeout` and batch systems send
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    if how == "agi run":
        assert "terminated by SIGTERM" in err
    record = RunStore(share).find(run_dir.name)
    assert record.status == "interrupted" and record.error == "terminated by SIGTERM"
    assert 0 < record.totals.ok < 400
    assert not [pid for pid in slots if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_a_clean_dask_run_and_ctrl_c_print_no_error_or_traceback(share):
    done = run_agi(*_run_toy(share, "d", n=8))
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    # Ctrl-C in a terminal reaches the whole process group: the manager and its Dask workers.
    process = _start(_run_toy(share, "d"))
    run_dir = _wait_for_a_logged_partition(share, process)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "ERROR" not in err and "Traceback" not in err, err
    assert RunStore(share).find(run_dir.name).status == "interrupted"


def _listening_ports() -> set[int]:
    return {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN}


@pytest.mark.parametrize("dashboard_port", [None, 8799])
def test_a_local_dask_run_does_not_take_port_8787_unless_told(share, toy_env, dashboard_port):
    seen: set[int] = set()
    cluster = {"workers_data_path": str(share), "workers": {"127.0.0.1": 1}, "dask": {"dashboard_port": dashboard_port}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(AGI.run(toy_env, mode="d", n=2, use_cache=False, cluster=cluster,
                            on_outcome=lambda outcome: seen.update(_listening_ports())))  # while the scheduler runs here
    assert seen, "the scheduler in this process listens on its ports"
    assert 8787 not in seen
    # Dask falls back to another port when 8787 is taken (by another run), with this warning
    assert not [w for w in caught if "8787" in str(w.message)]


def test_an_empty_plan_is_an_error_unless_the_app_allows_it(share, toy_env, monkeypatch):
    cluster = {"workers_data_path": str(share)}
    with pytest.raises(PlanError) as info:
        asyncio.run(AGI.run(toy_env, mode=0, n=0, cluster=cluster))
    assert "app 'toy': Toy.plan() returned no partitions (n=0" in info.value.message
    assert "check the args" in (info.value.fix or "") and "allow_empty_plan = True" in (info.value.fix or "")
    assert not (share / "runs").exists()
    monkeypatch.setattr(toy_env.app_class, "allow_empty_plan", True)  # what an app that may find nothing to do declares
    result = asyncio.run(AGI.run(toy_env, mode=0, n=0, cluster=cluster))
    assert result.status == "ok" and result.results == {}


def test_a_duplicate_id_from_app_plan_is_fixed_in_app_plan_and_in_a_plan_file_in_the_file(tmp_path):
    with pytest.raises(PlanError) as info:
        build_plan("toy", {}, [Partition("a"), Partition("b"), Partition("a")], TWO)
    assert "partition 'a' is defined 2 times" in info.value.message
    assert info.value.fix == "give every partition a unique id in App.plan()"
    plan = build_plan("toy", {}, [Partition("a"), Partition("b")], TWO)
    data = json.loads(plan.to_json())
    data["partitions"][1]["id"] = "a"  # an edited plan file
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError) as info:
        WorkPlan.load(tmp_path / "plan.json")
    assert "partition 'a' is defined 2 times" in info.value.message and str(tmp_path / "plan.json") in info.value.message
    assert "App.plan()" not in (info.value.fix or "") and "edit only the assignment" in (info.value.fix or "")
