"""A run stopped by Ctrl-C or SIGTERM, through a real `agi run` subprocess: it says how many
partitions finished and were kept, the run id and the exact resume command (which works as
printed), and its record keeps the partitions that were running as started and never ended, which
the report's Gantt draws grey."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agi_core.provenance import RunStore
from agi_core.reports.render import _Timeline
from tests.conftest import ROOT, TEST_APPS, run_agi


def _start_run(share: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "agi_core.cli", "run", "toy", "--apps-path", str(TEST_APPS), "--mode", "p",
               "--set", "n=12", "--set", "sleep=0.4", "--set", f"cluster.workers_data_path={share}",
               "--set", 'cluster.workers={"127.0.0.1"=2}']
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200"}, start_new_session=True)


def _wait_for_a_logged_partition(share: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if any(p.stat().st_size for p in share.glob("runs/toy/*/partitions.jsonl")):
            return
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the run never logged a finished partition: {process.communicate()[1][-2000:]}")


@pytest.mark.parametrize(("how", "said", "status"), [("SIGINT", "interrupted by Ctrl-C", 130),
                                                     ("SIGTERM", "terminated by SIGTERM", 143)])
def test_a_stopped_run_says_what_it_kept_and_how_to_resume(share, how, said, status):
    process = _start_run(share)
    _wait_for_a_logged_partition(share, process)
    if how == "SIGINT":
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    else:
        process.send_signal(signal.SIGTERM)  # what `timeout` and batch systems send to the manager
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    [run_dir] = share.glob("runs/toy/*/")
    record = RunStore(share).find(run_dir.name)
    kept = record.totals.ok
    assert record.status == "interrupted" and 0 < kept < 12
    first, resume = err.strip().splitlines()[-2:]
    assert first == (f"{said}: run {record.run_id} of toy stopped; {kept} of 12 partitions finished and were kept, "
                     f"{12 - kept} did not finish")
    assert resume.startswith(f"resume: agi run toy --resume {record.run_id} ")
    assert resume.endswith(f"(computes only the {12 - kept} not kept)")
    assert "Traceback" not in err

    # the partitions that were running: started, never ended; the Gantt draws them (grey)
    unfinished = [p for p in record.partitions if p.status == "not run" and p.start > 0]
    assert unfinished and all(p.end == 0 and p.worker.startswith(f"{p.host}:") for p in unfinished)
    assert _Timeline(record).unfinished == len(unfinished)
    report = run_agi("runs", "report", record.run_id, "--share", str(share))
    assert report.returncode == 0, report.stderr
    assert (run_dir / "gantt.png").stat().st_size > 0

    # the resume command works as printed: the kept partitions come from the cache
    words = shlex.split(resume.removeprefix("resume: ").rsplit("  (", 1)[0])
    assert words[0] == "agi"
    done = run_agi(*words[1:], cwd=share)
    assert done.returncode == 0, done.stderr
    # every kept partition comes from the cache; one more may too: a slot stores its results
    # before it reports them, so a partition that ended as the run was stopped can be in the
    # cache without the manager having recorded it
    cached = int(re.search(r"12/12 partitions ok \((\d+) cached\)", done.stdout).group(1))
    assert kept <= cached <= 12, done.stdout
