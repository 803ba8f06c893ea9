"""An exception in the app's own plan() or reduce() is said as every error is, through the real
CLI: ``error: APP plan() raised TYPE: ...`` / ``fix: ...``, the traceback only with ``-v``; an
`AgiError` the app raises for bad input is shown with its own fix; a reduce() failure is the
run's recorded failure, and its fix resumes the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TEST_APPS, run_agi


def _wordfreq(share: Path, *sets: str, verbose: bool = False, command: str = "run") -> tuple[int, str]:
    args = ["-v"] if verbose else []
    done = run_agi(*args, command, "wordfreq", "--apps-path", str(TEST_APPS), "--set", f"cluster.workers_data_path={share}",
                   *(item for value in sets for item in ("--set", value)))
    return done.returncode, done.stderr


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "one.txt").write_text("a b a c\n")
    (folder / "two.txt").write_text("b b d\n")
    return folder


@pytest.mark.parametrize("command", ["run", "distrib"])
def test_a_plan_exception_is_an_error_with_a_fix_and_no_traceback(tmp_path, share, command):
    missing = tmp_path / "no-such-folder"
    status, err = _wordfreq(share, f"data_dir={missing}", command=command)
    assert status == 1
    lines = err.strip().splitlines()
    assert lines[0] == f"error: wordfreq plan() raised FileNotFoundError: [Errno 2] No such file or directory: '{missing}'"
    assert lines[1].startswith(f"fix: check the path {missing}: if an arg gives it, `agi settings wordfreq` shows the args")
    assert len(lines) == 2 and "Traceback" not in err
    assert not (share / "runs").exists()  # nothing ran, nothing was recorded


def test_minus_v_adds_the_apps_traceback(tmp_path, share):
    status, err = _wordfreq(share, f"data_dir={tmp_path / 'no-such-folder'}", verbose=True)
    assert status == 1
    assert "Traceback" in err and "wordfreq/__init__.py" in err and "in plan" in err
    assert "error: wordfreq plan() raised FileNotFoundError" in err


def test_an_agi_error_from_plan_is_the_apps_own_message_and_fix(tmp_path, share):
    empty = tmp_path / "empty"
    empty.mkdir()
    status, err = _wordfreq(share, f"data_dir={empty}")
    assert status == 1
    assert err.strip().splitlines() == [f"error: wordfreq plan(): no .txt files in {empty}",
                                         "fix: put text files there, or --set data_dir=FOLDER"]


def test_a_reduce_exception_is_the_runs_recorded_failure_and_resume_fixes_it(share, corpus):
    status, err = _wordfreq(share, f"data_dir={corpus}", "word=zzz")
    assert status == 1 and "Traceback" not in err
    error = [line for line in err.splitlines() if line.startswith(("error:", "fix:"))]
    [record_path] = share.glob("runs/wordfreq/*/manifest.json")
    record = json.loads(record_path.read_text())
    run_id = record["run_id"]
    assert error[0] == "error: wordfreq reduce() raised KeyError: 'zzz'"
    assert f"`agi run wordfreq --resume {run_id}` runs only reduce() again" in error[1]
    assert record["status"] == "failed" and record["totals"]["ok"] == 2
    assert record["error"].startswith("wordfreq reduce() raised KeyError: 'zzz'\nTraceback") and "in reduce" in record["error"]
    verbose_status, verbose_err = _wordfreq(share, f"data_dir={corpus}", "word=zzz", verbose=True)
    assert verbose_status == 1 and "in reduce" in verbose_err and "KeyError: 'zzz'" in verbose_err
    # resuming takes every partition from the cache and runs reduce() again (here with the same
    # args, so it fails the same way: its record says so, and nothing was computed)
    done = run_agi("run", "wordfreq", "--apps-path", str(TEST_APPS), "--resume", run_id, "--set", f"cluster.workers_data_path={share}")
    assert done.returncode == 1 and "error: wordfreq reduce() raised KeyError: 'zzz'" in done.stderr
    assert "2 cached" in done.stdout
