"""The `agi` command line, run as a real subprocess."""

import doctest
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TEST_APPS, run_agi


def agi(*args, share=None, apps=TEST_APPS, **kwargs):
    extra = ["--set", f'cluster.workers_data_path="{share}"'] if share else []
    return run_agi("--apps-path", str(apps), *args, *extra, **kwargs)


APP_COMMANDS = (["run"], ["distrib"], ["settings"], ["apps"], ["install"], ["doctor"], ["cluster", "up"], ["cluster", "status"],
                ["cluster", "down"], ["runs"], ["runs", "list"], ["runs", "show"])


def test_help_everywhere():
    for command in ([], *APP_COMMANDS, ["hosts", "trust"]):
        out = run_agi(*command, "--help")
        assert out.returncode == 0 and "Usage: agi" in out.stdout, command


def test_every_app_command_takes_apps_path():
    for command in APP_COMMANDS:
        assert "--apps-path" in run_agi(*command, "--help").stdout, command


def test_apps_lists_apps_as_table_and_json():
    out = agi("apps", "--json")
    assert out.returncode == 0
    assert "toy" in [a["name"] for a in json.loads(out.stdout)]
    table = run_agi("apps")
    assert "mandelbrot" in table.stdout


def test_apps_path_after_the_subcommand(share, tmp_path):
    empty = tmp_path / "no_apps"
    empty.mkdir()
    out = run_agi("run", "toy", "--apps-path", str(empty), "--apps-path", str(TEST_APPS), "--set", "n=2",
                  "--set", f'cluster.workers_data_path="{share}"')
    assert out.returncode == 0, out.stderr
    assert json.loads(run_agi("settings", "toy", "--apps-path", str(TEST_APPS), "--json").stdout)["args"]["n"] == 6
    assert "toy" in [a["name"] for a in json.loads(run_agi("apps", "--apps-path", str(TEST_APPS), "--json").stdout)]
    listed = run_agi("runs", "list", "toy", "--apps-path", str(TEST_APPS), "--share", str(share), "--json")
    assert [r["app"]["name"] for r in json.loads(listed.stdout)] == ["toy"]


def test_apps_path_before_and_after_the_subcommand_add_up(share, tmp_path):
    empty = tmp_path / "no_apps"
    empty.mkdir()
    out = run_agi("--apps-path", str(empty), "run", "toy", "--apps-path", str(TEST_APPS), "--set", "n=2",
                  "--set", f'cluster.workers_data_path="{share}"', "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["value"] == 1  # 0*0 + 1*1
    missing = run_agi("--apps-path", str(empty), "run", "toy", "--set", f'cluster.workers_data_path="{share}"')
    assert missing.returncode == 1 and "unknown app 'toy'" in missing.stderr


def test_run_prints_result_and_record_and_runs_reads_it(share):
    out = agi("run", "toy", "--set", "n=3", "--mode", "p", share=share)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout and "record:" in out.stdout
    listed = json.loads(agi("runs", "list", "--share", str(share), "--json").stdout)
    assert len(listed) == 1 and listed[0]["status"] == "ok"
    run_id = listed[0]["run_id"]
    shown = json.loads(agi("runs", "show", run_id[:17], "--share", str(share), "--json").stdout)
    assert shown["run_id"] == run_id and shown["mode"] == {"value": 1, "letters": "p"} and shown["schema"] == "agi.run.v2"
    text = agi("runs", "show", "last", "--share", str(share))
    assert run_id in text.stdout and "127.0.0.1-0" in text.stdout


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
    plan["assignment"] = {"127.0.0.1-0": [], "127.0.0.1-1": [p["id"] for p in plan["partitions"]]}
    plan_file.write_text(json.dumps(plan))
    ran = agi("run", "toy", "--mode", "p", "--set", 'cluster.workers."127.0.0.1"=2', "--plan", str(plan_file), share=share)
    assert ran.returncode == 0, ran.stderr
    record = json.loads(agi("runs", "show", "last", "--share", str(share), "--json").stdout)
    assert {p["slot"] for p in record["partitions"]} == {"127.0.0.1-1"}
    # a duplicated partition is refused before anything runs
    plan["assignment"]["127.0.0.1-0"] = [plan["partitions"][0]["id"]]
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


# -- agi runs show: a summary, not one row per partition ----------------------------------------


def _partition_ids(text):
    return set(re.findall(r"\bp(\d+)\b", text))


def test_runs_show_summarises_counts_and_failures_without_partition_rows(share):
    ran = agi("run", "toy", "--mode", "p", "--set", "n=30", "--set", f"fail_on={list(range(25))}",
              "--set", 'cluster.workers."127.0.0.1"=3', share=share)
    assert ran.returncode == 1
    out = agi("runs", "show", "last", "--share", str(share))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert ": failed" in text and "mode 1 (p)" in text
    assert "30 partitions: 5 ok, 25 failed, 0 skipped, 0 cached, 0 not run" in text
    assert all(f"127.0.0.1-{i}" in text for i in range(3))
    assert "25 failed partitions (the first 20)" in text
    assert text.count("ValueError: toy failure in partition") == 20 and "… and 5 more failed" in text
    assert "slowest 10" in text
    assert len(_partition_ids(text)) < 30  # no row per partition: failures and the slowest only


def test_runs_show_all_has_every_partition_and_every_failure(share):
    agi("run", "toy", "--mode", "p", "--set", "n=30", "--set", f"fail_on={list(range(25))}",
        "--set", 'cluster.workers."127.0.0.1"=3', share=share)
    text = agi("runs", "show", "last", "--share", str(share), "--all").stdout
    assert _partition_ids(text) == {str(i) for i in range(30)}
    assert text.count("ValueError: toy failure in partition") == 25 and "more failed" not in text


def test_runs_show_json_is_the_record(share):
    agi("run", "toy", "--set", "n=3", share=share)
    record = json.loads(agi("runs", "show", "last", "--share", str(share), "--json").stdout)
    assert record["schema"] == "agi.run.v2" and record["totals"]["ok"] == 3
    assert [p["id"] for p in record["partitions"]] == ["p0", "p1", "p2"]


def test_a_run_whose_manager_died_reads_abandoned(share):
    proc = subprocess.Popen(
        [sys.executable, "-m", "agi_core.cli", "--apps-path", str(TEST_APPS), "run", "toy", "--mode", "p",
         "--set", "n=40", "--set", "sleep=0.3", "--set", f'cluster.workers_data_path="{share}"', "--set", 'cluster.workers."127.0.0.1"=2'],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline and not any(p.stat().st_size for p in share.glob("runs/toy/*/partitions.jsonl")):  # one logged
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    listed = json.loads(agi("runs", "list", "--share", str(share), "--json").stdout)
    assert [r["status"] for r in listed] == ["abandoned"]
    text = agi("runs", "show", "last", "--share", str(share)).stdout
    assert ": abandoned" in text and f"its manager (pid {proc.pid} on " in text and "not finished" in text
    assert "abandoned" in agi("runs", "list", "--share", str(share)).stdout


# -- agi run's live view ------------------------------------------------------------------------


def test_run_progress_draws_one_bar_overall_and_one_per_slot_on_stderr(share):
    out = agi("run", "toy", "--mode", "p", "--set", 'cluster.workers."127.0.0.1"=2', "--progress", share=share)
    assert out.returncode == 0, out.stderr
    assert "toy mode 1 (p)" in out.stderr and "6/6" in out.stderr
    assert "127.0.0.1-0" in out.stderr and "127.0.0.1-1" in out.stderr
    assert "toy mode" not in out.stdout
    quiet = agi("run", "toy", "--mode", "p", share=share)  # stderr is not a terminal: no bars
    assert "toy mode" not in quiet.stderr


def test_run_progress_names_the_dask_scheduler(share, tmp_path):
    out = run_agi("--apps-path", str(TEST_APPS), "run", "toy", "--mode", "d", "--progress", "--set", "n=2",
                  "--set", f'cluster.workers_data_path="{share}"', env={"XDG_STATE_HOME": str(tmp_path / "state")})
    assert out.returncode == 0, out.stderr
    assert re.search(r"^Dask scheduler tls://127\.0\.0\.1:\d+", out.stderr, re.MULTILINE), out.stderr
    assert "Dask scheduler" in agi("runs", "show", "last", "--share", str(share)).stdout


def test_run_view_renders_events():
    from rich.console import Console

    from agi_core.base.events import ClusterReady, Notice, PartitionDone, Phase, RunFinished, RunStarted
    from agi_core.cli.run_view import RunView

    stream = io.StringIO()
    with RunView(enabled=True, console=Console(file=stream, width=120)) as view:
        view(Phase("compiling", "the Cython kernels of toy"))
        view(ClusterReady("tcp://127.0.0.1:8786", "http://127.0.0.1:8787/status", warm=True))
        view(RunStarted("r1", "toy", 5, 3, {"a-0": 2, "a-1": 1}))
        tasks = {task.description.strip(): task for task in view._progress.tasks}
        view(PartitionDone("p0", "a-0", "ok"))
        view(PartitionDone("p1", "a-0", "failed"))
        view(Notice("a warm cluster with other settings: started a new one", level="warning"))
        view(RunFinished("r1", "failed", 1.0))
    assert [tasks[name].completed for name in ("a-0", "a-1")] == [2, 0]
    assert tasks["[bold]toy mode 5 (pd)"].completed == 2
    text = stream.getvalue()
    assert "compiling the Cython kernels of toy" in text
    assert "Dask scheduler tcp://127.0.0.1:8786, dashboard http://127.0.0.1:8787/status (warm cluster)" in text
    assert "warning: a warm cluster with other settings" in text


def test_run_view_disabled_prints_only_warnings():
    from rich.console import Console

    from agi_core.base.events import ClusterReady, Notice, RunStarted
    from agi_core.cli.run_view import RunView

    stream = io.StringIO()
    with RunView(enabled=False, console=Console(file=stream)) as view:
        view(RunStarted("r1", "toy", 0, 3, {"a-0": 3}))
        view(ClusterReady("tcp://127.0.0.1:8786"))
        view(Notice("for your information"))
        view(Notice("careful", level="warning"))
    assert stream.getvalue() == "warning: careful\n"


@pytest.mark.parametrize("module", ["agi_core.cli.options", "agi_core.cli.run_view"])
def test_cli_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


# -- agi cluster: through the AGI facade ----------------------------------------------------------


def test_cluster_status_without_a_warm_cluster_exits_1(tmp_path):
    out = run_agi("cluster", "status", "toy", "--apps-path", str(TEST_APPS), env={"XDG_STATE_HOME": str(tmp_path)})
    assert out.returncode == 1, out.stderr
    assert "toy: not running" in out.stdout
    down = run_agi("cluster", "down", "toy", "--apps-path", str(TEST_APPS), env={"XDG_STATE_HOME": str(tmp_path)})
    assert down.returncode == 0 and "no warm cluster of toy" in down.stdout


def test_apps_copy_makes_an_editable_copy_found_first(tmp_path):
    copied = run_agi("apps", "copy", "mandelbrot", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    project = tmp_path / "apps" / "mandelbrot_project"
    assert (project / "pyproject.toml").exists() and not list(project.rglob("__pycache__")) and not list(project.rglob("*.so"))
    listed = {a["name"]: a["path"] for a in json.loads(run_agi("apps", "--json", cwd=tmp_path).stdout)}
    assert listed["mandelbrot"] == str(project)  # ./apps comes before the bundled examples
    saved = run_agi("settings", "mandelbrot", "--set", "width=640", cwd=tmp_path)
    assert saved.returncode == 0 and "width = 640" in (project / "app_settings.toml").read_text()
    again = run_agi("apps", "copy", "mandelbrot", cwd=tmp_path)
    assert again.returncode == 1 and "exists already: nothing copied" in again.stderr
    assert run_agi("apps", "copy", "nope", cwd=tmp_path).returncode == 1
