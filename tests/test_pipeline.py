"""Pipelines (`agi steps`): steps in lab_steps.toml run in dependency order, independent steps at
the same time; records name steps and pipeline runs; stale steps are refused; a failed step stops
its dependants only; --resume reuses the ok steps and the cache; Ctrl-C leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agi_core.pipeline import PIPELINE_SCHEMA, STEPS_SCHEMA, load_pipeline

from .conftest import ROOT, run_agi

RUNS = Path("pipeline_runs") / "lab_steps"  # the runs of lab_steps.toml, beside it

RENDEZVOUS = """\
import pathlib, sys, time
# runs at the same time as step {other!r}, or not at all: each waits for the other's mark
here = pathlib.Path("marks"); here.mkdir(exist_ok=True)
(here / "{me}").touch()
with open("order.txt", "a") as f: f.write("{me}\\n")
deadline = time.time() + 90
while not (here / "{other}").exists():
    if time.time() > deadline:
        sys.exit("{other} never ran at the same time as {me}")
    time.sleep(0.05)
"""


def _agi(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_agi(*args, cwd=cwd, env=env, timeout=240)


def _python_step(cwd: Path, name: str, code: str, *options: str) -> None:
    (cwd / f"{name}.py").write_text(code)
    done = _agi(cwd, "steps", "add-python", f"{name}.py", *options)
    assert done.returncode == 0, done.stderr


def _toy_step(cwd: Path, apps: Path, share: Path, step_id: str, *options: str) -> None:
    done = _agi(cwd, "steps", "add", "toy", "run", "--apps-path", str(apps), "--id", step_id,
                "--set", f"cluster.workers_data_path={share}", *options)
    assert done.returncode == 0, done.stderr


def _record(cwd: Path, run: str | None = None) -> dict:
    """The pipeline record ``run``, else the newest (by start time, as `agi steps runs` orders them:
    two runs started within the same second have ids in random order)."""
    records = [json.loads(p.read_text()) for p in (cwd / RUNS).glob("*/pipeline.json")]
    if run:
        return next(r for r in records if r["pipeline_run"] == run)
    return max(records, key=lambda r: (r["started"], r["pipeline_run"]))


def _steps(record: dict) -> dict[str, dict]:
    return {step["id"]: step for step in record["steps"]}


def test_diamond_runs_in_dependency_order_with_independent_steps_together(tmp_path, apps_copy, share):
    # a → (b, c) → d: b and c can only both succeed when they run at the same time
    _python_step(tmp_path, "a", "open('order.txt', 'a').write('a\\n')\n")
    _python_step(tmp_path, "b", RENDEZVOUS.format(me="b", other="c"), "--deps", "a")
    _python_step(tmp_path, "c", RENDEZVOUS.format(me="c", other="b"), "--deps", "a")
    _toy_step(tmp_path, apps_copy, share, "d", "--deps", "b,c", "--set", "n=3")
    pipeline = load_pipeline(tmp_path / "lab_steps.toml")
    assert pipeline.schema_ == STEPS_SCHEMA and pipeline.order()[0] == "a" and pipeline.order()[-1] == "d"
    assert pipeline.get("d").code.startswith("# agi.snippet.v1  kind=run  app=toy")

    done = _agi(tmp_path, "steps", "run")
    assert done.returncode == 0, done.stdout + done.stderr
    order = (tmp_path / "order.txt").read_text().split()
    assert order[0] == "a" and sorted(order[1:]) == ["b", "c"]

    record = _record(tmp_path)
    assert record["schema"] == PIPELINE_SCHEMA and record["status"] == "ok"
    steps = _steps(record)
    assert [s["status"] for s in steps.values()] == ["ok"] * 4
    assert steps["d"]["started"] > max(steps["b"]["ended"], steps["c"]["ended"])
    (run,) = steps["d"]["runs"]
    manifest = json.loads(Path(run["manifest"]).read_text())
    assert manifest["run_id"] == run["run_id"] and manifest["status"] == "ok" == run["status"]
    assert manifest["step"] == {"pipeline": str(tmp_path / "lab_steps.toml"), "pipeline_run": record["pipeline_run"], "step": "d"}
    assert manifest["request"]["step"]["step"] == "d"

    listed = json.loads(_agi(tmp_path, "steps", "list", "--json").stdout)
    assert {row["id"]: (row["last_status"], row["stale"]) for row in listed} == {k: ("ok", None) for k in "abcd"}


def test_failed_step_stops_its_dependants_and_resume_reuses_ok_steps_and_the_cache(tmp_path, apps_copy, share):
    flag = tmp_path / "still-broken"
    flag.touch()
    _toy_step(tmp_path, apps_copy, share, "compute", "--set", "fail_on=[2]", "--set", f"fail_while={flag}", "--set", "n=4")
    reader = ("from agi_core.pipeline import step_inputs\n(run,) = step_inputs()['compute']\n"
              "open('after.txt', 'w').write(f'{run.run_id} {run.status} {run.totals.partitions}')\n")
    _python_step(tmp_path, "after", reader, "--deps", "compute")
    _python_step(tmp_path, "other", "print('independent')\n")

    done = _agi(tmp_path, "steps", "run")
    assert done.returncode == 1
    assert "step(s) failed: compute; skipped: after" in done.stderr
    assert "--resume" in done.stderr
    first = _record(tmp_path)
    steps = _steps(first)
    assert first["status"] == "failed"
    assert (steps["compute"]["status"], steps["after"]["status"], steps["other"]["status"]) == ("failed", "skipped", "ok")
    assert "dependency 'compute'" in steps["after"]["reason"]
    assert steps["compute"]["runs"][0]["status"] == "failed"
    assert "partition" in (tmp_path / RUNS / first["pipeline_run"] / steps["compute"]["log"]).read_text()

    flag.unlink()
    done = _agi(tmp_path, "steps", "run", "--resume")
    assert done.returncode == 0, done.stderr
    second = _record(tmp_path)
    assert second["pipeline_run"] != first["pipeline_run"] and second["resumed_from"] == first["pipeline_run"]
    steps = _steps(second)
    assert steps["other"]["reused_from"] == first["pipeline_run"] and steps["other"]["duration_s"] == 0
    assert steps["compute"]["status"] == steps["after"]["status"] == "ok"
    manifest = json.loads(Path(steps["compute"]["runs"][0]["manifest"]).read_text())
    assert manifest["totals"]["cached"] == 3 and manifest["totals"]["ok"] == 1  # only the failed partition ran
    assert (tmp_path / "after.txt").read_text() == f"{manifest['run_id']} ok 4"  # it read its dep's run
    again = _agi(tmp_path, "steps", "run", "--resume", second["pipeline_run"])
    assert again.returncode == 1 and "nothing to resume" in again.stderr


def test_stale_step_is_refused_until_refreshed_or_allowed(tmp_path, apps_copy, share):
    _toy_step(tmp_path, apps_copy, share, "render", "--set", "n=2")
    before = (tmp_path / "lab_steps.toml").read_text()
    assert _agi(tmp_path, "settings", "toy", "--apps-path", str(apps_copy), "--set", "offset=5").returncode == 0

    (row,) = json.loads(_agi(tmp_path, "steps", "list", "--json").stdout)
    assert row["stale"].startswith("settings changed since it was generated") and "app_settings.toml" in row["stale"]
    assert row["stale"].endswith(": args.offset was 0, is now 5"), row["stale"]
    refused = _agi(tmp_path, "steps", "run")
    assert refused.returncode == 1
    assert "stale step(s), not run: render" in refused.stderr and "agi steps refresh render" in refused.stderr
    assert not (tmp_path / "pipeline_runs").exists()  # refused before anything ran
    assert (tmp_path / "lab_steps.toml").read_text() == before

    allowed = _agi(tmp_path, "steps", "run", "--allow-stale")
    assert allowed.returncode == 0, allowed.stderr
    record = _record(tmp_path)
    assert _steps(record)["render"]["stale"].startswith("settings changed")
    log = (tmp_path / RUNS / record["pipeline_run"] / "logs" / "render.log").read_text()
    assert "settings changed since this snippet was generated" in log

    assert _agi(tmp_path, "steps", "refresh", "render").returncode == 0
    (row,) = json.loads(_agi(tmp_path, "steps", "list", "--json").stdout)
    assert row["stale"] is None
    shown = json.loads(_agi(tmp_path, "steps", "show", "render", "--json").stdout)
    assert shown["set"] == ["cluster.workers_data_path=" + str(share), "n=2"] and shown["description"] == "run toy"


@pytest.mark.parametrize(("steps_toml", "message"), [
    ('[[steps]]\nid = "a"\nkind = "python"\ncode = ""\n[[steps]]\nid = "a"\nkind = "python"\ncode = ""\n', "duplicate step id 'a'"),
    ('[[steps]]\nid = "a"\nkind = "python"\ndeps = ["nope"]\ncode = ""\n', "step 'a' depends on 'nope', which is not a step"),
    ('[[steps]]\nid = "a"\nkind = "python"\ndeps = ["b"]\ncode = ""\n[[steps]]\nid = "b"\nkind = "python"\ndeps = ["a"]\ncode = ""\n',
     "cycle: a → b → a"),
    ('[[steps]]\nid = "a"\nkind = "shell"\ncode = ""\n', "step 'a' key kind"),
])
def test_invalid_pipelines_are_errors_that_name_the_step(tmp_path, steps_toml, message):
    (tmp_path / "lab_steps.toml").write_text(f'schema = "{STEPS_SCHEMA}"\n' + steps_toml)
    for command in (("steps", "list"), ("steps", "run")):
        done = _agi(tmp_path, *command)
        assert done.returncode == 1
        assert message in done.stderr and "lab_steps.toml" in done.stderr
    assert not (tmp_path / "pipeline_runs").exists()


def test_add_and_remove_keep_the_file_valid(tmp_path):
    _python_step(tmp_path, "first", "print(1)\n")
    _python_step(tmp_path, "second", "print(2)\n", "--deps", "first")
    before = (tmp_path / "lab_steps.toml").read_text()
    bad = _agi(tmp_path, "steps", "add-python", "first.py", "--id", "third", "--deps", "missing")
    assert bad.returncode == 1 and "'third' depends on 'missing'" in bad.stderr
    clash = _agi(tmp_path, "steps", "add-python", "first.py", "--id", "second")
    assert clash.returncode == 1 and "already has a step 'second'" in clash.stderr
    blocked = _agi(tmp_path, "steps", "remove", "first")
    assert blocked.returncode == 1 and "second depend on 'first'" in blocked.stderr
    assert (tmp_path / "lab_steps.toml").read_text() == before
    assert _agi(tmp_path, "steps", "add-python", "first.py").returncode == 0  # same id, made unique
    assert load_pipeline(tmp_path / "lab_steps.toml").ids() == ["first", "second", "first-2"]
    assert _agi(tmp_path, "steps", "remove", "first", "--force").returncode == 0
    pipeline = load_pipeline(tmp_path / "lab_steps.toml")
    assert pipeline.ids() == ["second", "first-2"] and pipeline.get("second").deps == []


def test_from_and_ids_select_steps_and_report_renders(tmp_path):
    for name, deps in (("one", ()), ("two", ("one",)), ("three", ("two",)), ("aside", ())):
        _python_step(tmp_path, name, f"open('ran.txt', 'a').write('{name}\\n')\n", *(("--deps", ",".join(deps)) if deps else ()))
    assert _agi(tmp_path, "steps", "run", "--from", "two").returncode == 0
    assert (tmp_path / "ran.txt").read_text().split() == ["two", "three"]
    assert _agi(tmp_path, "steps", "run", "aside", "one").returncode == 0
    assert sorted((tmp_path / "ran.txt").read_text().split()[2:]) == ["aside", "one"]  # independent: run together, either order

    done = _agi(tmp_path, "steps", "report", "last")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / RUNS / _record(tmp_path)["pipeline_run"]
    for name in ("gantt.png", "dag.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = (folder / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page>") >= 3


def test_ctrl_c_stops_the_running_steps_and_records_the_interruption(tmp_path):
    _python_step(tmp_path, "slow", "import time\nprint('started', flush=True)\ntime.sleep(300)\n")
    _python_step(tmp_path, "later", "print('never')\n", "--deps", "slow")
    process = subprocess.Popen([sys.executable, "-m", "agi_core.cli", "steps", "run"], cwd=tmp_path, env=os.environ,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        logs = list(tmp_path.glob("pipeline_runs/lab_steps/*/logs/slow.log"))
        if logs and "started" in logs[0].read_text():
            break
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the slow step never started")
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    record = _record(tmp_path)
    steps = _steps(record)
    assert record["status"] == "interrupted"
    assert steps["slow"]["status"] == "interrupted" and steps["later"]["status"] == "not_run"
    script = str(tmp_path / RUNS / record["pipeline_run"] / "steps" / "slow.py")
    left = subprocess.run(["pgrep", "-f", script], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == "", f"step process still running: {left.stdout}"


def test_steps_help_explains_every_command():
    done = run_agi("steps", "--help", cwd=ROOT)
    assert done.returncode == 0
    for command in ("add", "add-python", "list", "show", "refresh", "remove", "run", "runs", "report"):
        assert f"  {command} " in done.stdout


def test_two_pipeline_files_in_one_folder_keep_their_runs_apart(tmp_path):
    """`agi steps runs/report/run --resume` of one file never pick the other file's run."""
    (tmp_path / "ok.py").write_text("print('fine')\n")
    (tmp_path / "bad.py").write_text("import sys\nsys.exit('broken')\n")
    assert _agi(tmp_path, "steps", "add-python", "ok.py").returncode == 0
    assert _agi(tmp_path, "steps", "add-python", "bad.py", "--file", "other.toml").returncode == 0
    assert _agi(tmp_path, "steps", "run", "--file", "other.toml").returncode == 1  # failed: resumable
    assert _agi(tmp_path, "steps", "run").returncode == 0
    mine = _record(tmp_path)
    (other,) = [json.loads(p.read_text()) for p in (tmp_path / "pipeline_runs" / "other").glob("*/pipeline.json")]
    assert mine["status"] == "ok" and other["status"] == "failed"
    listed = _agi(tmp_path, "steps", "runs", "--json")
    assert [r["pipeline_run"] for r in json.loads(listed.stdout)] == [mine["pipeline_run"]]
    resumed = _agi(tmp_path, "steps", "run", "--resume")  # lab_steps.toml's last run finished ok: nothing to resume
    assert resumed.returncode == 1 and "nothing to resume" in resumed.stderr and other["pipeline_run"] not in resumed.stderr
    report = _agi(tmp_path, "steps", "report", "last", "--file", "other.toml")
    assert report.returncode == 0 and other["pipeline_run"] in report.stdout
