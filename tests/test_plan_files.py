"""Plan files end to end with an app whose partitions have int weights, unicode ids and nested
payloads (tests/apps/intdag_project, a DAG): `agi distrib --out` then `agi run --plan`, an edit
named by the error, `--resume` after a failure, a SIGKILL and a Ctrl-C, and `agi runs report`
with the planned load and the DAG picture. Real CLI processes, real pool slots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agi_core import WorkPlan
from agi_core.cache import CacheStore
from agi_core.cache.keys import read_run_keys
from agi_core.provenance import RunStore, read_record
from tests.conftest import ROOT, TEST_APPS, run_agi

SINK = "puits-Σ"
VALUE = 1072  # the sink's result for width 4: 1000 + the middle layer's results (1 + 13 + 25 + 33)


def agi(share: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_agi(*args, "--apps-path", str(TEST_APPS), "--set", f"cluster.workers_data_path={share}")


def ran(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_distrib_out_then_run_plan_runs_the_int_weight_dag_as_planned(share, tmp_path):
    path = tmp_path / "plan.json"
    assert agi(share, "distrib", "intdag", "--mode", "p", "--out", str(path)).returncode == 0
    written = json.loads(path.read_text())
    assert {p["weight"] for p in written["partitions"]} >= {1.0, 2.0, 8.0}  # the app gave ints
    assert written["partitions"][-1]["payload"]["meta"]["nested"] == {"deep": [[1, 2], {"x": None}]}
    slot = next(name for name, ids in written["assignment"].items() if "tâche-0-0" not in ids)
    for ids in written["assignment"].values():  # a valid edit: move tâche-0-0 to another slot
        if "tâche-0-0" in ids:
            ids.remove("tâche-0-0")
    written["assignment"][slot].append("tâche-0-0")
    path.write_text(json.dumps(written, ensure_ascii=False))
    out = ran(agi(share, "run", "intdag", "--mode", "p", "--plan", str(path), "--json"))
    assert out["status"] == "ok" and out["value"] == VALUE
    record = read_record(Path(out["manifest"]))
    assert record.plan.fingerprint == written["fingerprint"]
    assert {p.id: p.slot for p in record.partitions}["tâche-0-0"] == slot  # run as edited
    assert WorkPlan.load(Path(out["run_dir"]) / "plan.json").assignment == written["assignment"]


def test_run_plan_names_the_partition_field_and_values_an_edit_changed(share, tmp_path):
    path = tmp_path / "plan.json"
    assert agi(share, "distrib", "intdag", "--mode", "p", "--out", str(path)).returncode == 0
    edited = json.loads(path.read_text())
    edited["partitions"][1]["weight"] = 7  # tâche-0-1: 2 when planned
    path.write_text(json.dumps(edited))
    out = agi(share, "run", "intdag", "--mode", "p", "--plan", str(path))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "partition 'tâche-0-1' weight was 2.0, is 7.0 in the file" in out.stderr.replace("\n", " ")
    assert not (share / "runs").exists()  # refused before anything ran


def test_resume_after_a_failed_run_computes_only_what_failed(share, tmp_path):
    flag = tmp_path / "fail"
    flag.touch()
    out = agi(share, "run", "intdag", "--mode", "p", "--set", f"fail_while={flag}", "--json")
    assert out.returncode != 0
    failed = RunStore(share).find("last")
    assert failed.status == "failed" and {p.id: p.status for p in failed.partitions}[SINK] == "failed"
    flag.unlink()
    resumed = ran(agi(share, "run", "intdag", "--resume", "last", "--json"))
    assert resumed["status"] == "ok" and resumed["value"] == VALUE
    record = read_record(Path(resumed["manifest"]))
    assert record.resumed_from == failed.run_id
    assert {p.id: p.cache for p in record.partitions} == {**{p.id: "hit" for p in failed.partitions}, SINK: "stored"}


def _stored(share: Path) -> int:
    """How many of the running run's partitions have their result in the cache (its keys are
    written before anything runs)."""
    keys = [read_run_keys(path.parent) for path in share.glob("runs/intdag/*/cache_keys.json")]
    if not keys or keys[0] is None:
        return 0
    return len(CacheStore.for_app(share, "intdag").existing(keys[0].keys.values()))


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGKILL, "abandoned"), (signal.SIGINT, "interrupted")])
def test_resume_after_the_manager_was_stopped_finishes_the_dag(share, stop, status):
    manager = subprocess.Popen([sys.executable, "-m", "agi_core.cli", "run", "intdag", "--mode", "p", "--set", "sleep=0.5",
                                "--apps-path", str(TEST_APPS), "--set", f"cluster.workers_data_path={share}"],
                               cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    deadline = time.time() + 120  # a hang guard only
    while _stored(share) < 2:
        assert manager.poll() is None, manager.communicate()
        assert time.time() < deadline, "the run never got going"
        time.sleep(0.05)
    manager.send_signal(stop)
    manager.communicate(timeout=60)
    finished = _stored(share)
    stopped = RunStore(share).find("last")
    assert stopped.status == status
    resumed = ran(agi(share, "run", "intdag", "--resume", "last", "--json"))
    assert resumed["status"] == "ok" and resumed["value"] == VALUE
    record = read_record(Path(resumed["manifest"]))
    caches = {p.id: p.cache for p in record.partitions}
    assert record.resumed_from == stopped.run_id and set(caches.values()) == {"hit", "stored"}
    assert caches[SINK] == "stored" and sum(c == "hit" for c in caches.values()) >= finished >= 2


def test_report_of_an_int_weight_dag_has_the_planned_load_and_the_dag(share):
    out = ran(agi(share, "run", "intdag", "--mode", "p", "--json"))
    report = run_agi("runs", "report", "last", "--share", str(share))
    assert report.returncode == 0, report.stderr
    names = [Path(line).name for line in report.stdout.splitlines() if line.strip()]
    assert names == ["gantt.png", "load.png", "dag.png", "cache.png", "report.pdf"]

    from agi_core.reports.render import read_plan

    record = read_record(Path(out["manifest"]))
    plan, note = read_plan(Path(out["run_dir"]), record)  # the plan.json the run saved reads back, fingerprint and all
    assert note == "" and plan is not None and set(plan.loads()) == set(plan.assignment)
