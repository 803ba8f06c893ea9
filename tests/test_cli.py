"""The `agi` command line, run as a real subprocess."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TEST_APPS, run_agi


def agi(*args, share=None, apps=TEST_APPS, **kwargs):
    extra = ["--set", f'cluster.workers_data_path="{share}"'] if share else []
    return run_agi("--apps-path", str(apps), *args, *extra, **kwargs)


def test_help_everywhere():
    for command in ([], ["run"], ["distrib"], ["settings"], ["apps"], ["runs"], ["runs", "list"], ["runs", "show"]):
        out = run_agi(*command, "--help")
        assert out.returncode == 0 and "Usage: agi" in out.stdout, command


def test_apps_lists_apps_as_table_and_json():
    out = agi("apps", "--json")
    assert out.returncode == 0
    assert [a["name"] for a in json.loads(out.stdout)] == ["toy"]
    table = run_agi("apps")
    assert "mandelbrot" in table.stdout


def test_run_prints_result_and_record_and_runs_reads_it(share):
    out = agi("run", "toy", "--set", "n=3", "--mode", "p", share=share)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout and "record:" in out.stdout
    listed = json.loads(agi("runs", "list", "--share", str(share), "--json").stdout)
    assert len(listed) == 1 and listed[0]["status"] == "ok"
    run_id = listed[0]["run_id"]
    shown = json.loads(agi("runs", "show", run_id[:17], "--share", str(share), "--json").stdout)
    assert shown["run_id"] == run_id and shown["mode"] == {"value": 1, "letters": "p"}
    text = agi("runs", "show", "last", "--share", str(share))
    assert run_id in text.stdout and "localhost-" in text.stdout


def test_run_json_output(share):
    out = agi("run", "toy", "--set", "n=4", "--json", share=share)
    data = json.loads(out.stdout)
    assert data["status"] == "ok" and data["value"] == 14 and os.path.isfile(data["manifest"])


def test_failed_partition_exits_non_zero_naming_it(share):
    out = agi("run", "toy", "--set", "fail_on=[1]", share=share)
    assert out.returncode == 1
    assert "partition 'p1' failed" in out.stderr and "ValueError: toy failure in partition 1" in out.stderr
    record = json.loads(agi("runs", "show", "last", "--share", str(share), "--json").stdout)
    assert record["status"] == "failed"


@pytest.mark.parametrize("args, expected", [
    (["run", "nope"], "unknown app 'nope'"),
    (["run", "toy", "--mode", "xyz"], "invalid mode 'xyz'"),
    (["run", "toy", "--mode", "16"], "out of range"),
    (["run", "toy", "--set", "n=many"], "key 'args.n'"),
    (["run", "toy", "--set", 'cluster.workers."127.0.0.1"=-1', "--mode", "p"], "greater than or equal to 0"),
    (["run", "toy", "--plan", "/nonexistent/plan.json"], "cannot read the plan"),
])
def test_bad_input_exits_non_zero_without_traceback_and_writes_nothing(share, args, expected):
    out = agi(*args, share=share)
    assert out.returncode == 1
    assert expected in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(share.iterdir()) == []


def test_verbose_shows_the_traceback(share):
    out = agi("-v", "run", "toy", "--mode", "xyz", share=share)
    assert out.returncode == 1 and "Traceback" in out.stderr


def test_malformed_settings_file_is_reported_and_nothing_written(apps_copy, share):
    settings = apps_copy / "toy_project" / "app_settings.toml"
    settings.write_text("[args]\nn = = 3\n")
    out = agi("run", "toy", apps=apps_copy, share=share)
    assert out.returncode == 1 and str(settings) in out.stderr and "invalid TOML" in out.stderr
    assert list(share.iterdir()) == []


def test_settings_set_saves_and_keeps_unknown_tables(apps_copy):
    settings = apps_copy / "toy_project" / "app_settings.toml"
    out = agi("settings", "toy", "--set", "n=9", "--set", "cluster.pool=true", apps=apps_copy)
    assert out.returncode == 0, out.stderr
    text = settings.read_text()
    assert "n = 9" in text and "[lab]" in text and 'owner = "tests"' in text and "# toy test app" in text
    data = json.loads(agi("settings", "toy", "--json", apps=apps_copy).stdout)
    assert data["args"]["n"] == 9 and data["mode"] == 1
    before = settings.read_text()
    bad = agi("settings", "toy", "--set", "cluster.pool=maybe", apps=apps_copy)
    assert bad.returncode == 1 and "cluster.pool" in bad.stderr
    assert settings.read_text() == before


def test_distrib_then_run_the_edited_plan(share, tmp_path):
    plan_file = tmp_path / "plan.json"
    out = agi("distrib", "toy", "--mode", "p", "--set", 'cluster.workers."127.0.0.1"=2', "--out", str(plan_file))
    assert out.returncode == 0, out.stderr
    assert "6 partitions on 2 slots" in out.stdout
    plan = json.loads(plan_file.read_text())
    plan["assignment"] = {"localhost-0": [], "localhost-1": [p["id"] for p in plan["partitions"]]}
    plan_file.write_text(json.dumps(plan))
    ran = agi("run", "toy", "--mode", "p", "--set", 'cluster.workers."127.0.0.1"=2', "--plan", str(plan_file), share=share)
    assert ran.returncode == 0, ran.stderr
    record = json.loads(agi("runs", "show", "last", "--share", str(share), "--json").stdout)
    assert {p["slot"] for p in record["partitions"]} == {"localhost-1"}
    # a duplicated partition is refused before anything runs
    plan["assignment"]["localhost-0"] = [plan["partitions"][0]["id"]]
    plan_file.write_text(json.dumps(plan))
    dup = agi("run", "toy", "--mode", "p", "--set", 'cluster.workers."127.0.0.1"=2', "--plan", str(plan_file), share=share)
    assert dup.returncode == 1 and "is assigned 2 times" in dup.stderr
    assert len(list((share / "runs" / "toy").iterdir())) == 1


def test_ctrl_c_stops_the_pool_and_writes_the_record(share):
    proc = subprocess.Popen(
        [sys.executable, "-m", "agi_core.cli", "--apps-path", str(TEST_APPS), "run", "toy", "--mode", "p",
         "--set", "n=40", "--set", "sleep=0.5", "--set", f'cluster.workers_data_path="{share}"', "--set", 'cluster.workers."127.0.0.1"=2'],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    manifest = None
    deadline = time.time() + 30
    while time.time() < deadline and manifest is None:  # wait until the run has started
        found = list(share.glob("runs/toy/*/manifest.json"))
        manifest = found[0] if found else None
        time.sleep(0.05)
    assert manifest is not None, "the run never started"
    time.sleep(0.8)
    children = _children(proc.pid)
    assert len(children) == 2  # the two slot processes
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    record = json.loads(manifest.read_text())
    assert record["status"] == "interrupted"
    assert 0 < record["totals"]["ok"] < 40 and record["totals"]["not_run"] > 0
    time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "slot processes survived Ctrl-C"


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
