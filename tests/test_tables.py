"""Every table of the `agi` command line stays readable at 80 columns: no column shrinks to nothing,
short values (ids, statuses, modes, durations, counts) print whole, no line is wider than 80."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import TEST_APPS, run_agi

NARROW = {"COLUMNS": "80"}


def _narrow(*args: str, cwd: Path | None = None) -> str:
    done = run_agi(*args, cwd=cwd, env=NARROW)
    assert done.returncode == 0, done.stderr
    # table lines (borders, header rules); free-text lines (args, paths) are the terminal's to wrap
    too_wide = [line for line in done.stdout.splitlines() if len(line) > 80 and set(line) & set("│┃━─")]
    assert too_wide == [], f"agi {' '.join(args)}:\n" + "\n".join(too_wide)
    return done.stdout


def _row(out: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first`` (boxed or not)."""
    for line in out.splitlines():
        cells = [c for c in re.split(r"\s*[│┃]\s*|\s{2,}", line.strip(" │┃")) if c]
        if cells and cells[0] == first:
            assert len(line) <= 80, line
            return cells
    raise AssertionError(f"no row {first!r} in:\n{out}")


@pytest.fixture(scope="module")
def share(tmp_path_factory) -> Path:
    """A share with two runs of the toy app (one ok, one with a failed partition) and their cache."""
    path = tmp_path_factory.mktemp("tables") / "share"
    path.mkdir()
    for extra in ((), ("--set", 'fail_on=[2]', "--set", "offset=1")):
        run_agi("--apps-path", str(TEST_APPS), "run", "toy", "--set", f'cluster.workers_data_path="{path}"', *extra)
    return path


def test_runs_list_keeps_status_mode_duration_and_counts_whole(share):
    out = _narrow("runs", "list", "--share", str(share))
    runs = json.loads(run_agi("runs", "list", "--share", str(share), "--json").stdout)
    assert len(runs) == 2
    for run in runs:
        cells = _row(out, run["run_id"])
        assert cells[1:4] == ["toy", run["status"], "0"]
        assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d", cells[4])  # started, short
        assert re.fullmatch(r"\d+\.\d\d s", cells[5]) and re.fullmatch(r"\d/6", cells[6])


def test_runs_show_summary_and_all_partitions(share):
    out = _narrow("runs", "show", "last", "--share", str(share), "--all")
    slot = _row(out, "127.0.0.1-0")
    assert slot[1:2] and slot[2].isdigit()
    for part in ("p0", "p2"):
        cells = _row(out, part)
        assert cells[1] in ("ok", "failed") and cells[2] == "127.0.0.1-0"


def test_cache_tables(share):
    summary = _row(_narrow("cache", "list", "--share", str(share)), "toy")
    assert summary[1].isdigit() and summary[2].endswith("B") and summary[3].endswith("ago")
    entries = _narrow("cache", "list", "toy", "--share", str(share))
    key = json.loads(run_agi("cache", "list", "toy", "--share", str(share), "--json").stdout)[0]["key"][:12]
    cells = _row(entries, key)
    assert re.fullmatch(r"p\d", cells[1]) and re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", cells[-1])


def test_apps_settings_and_ports_tables():
    apps = _narrow("apps")
    assert _row(apps, "mandelbrot")[1] == "0.1.0"
    settings = _narrow("--apps-path", str(TEST_APPS), "settings", "toy")
    assert _row(settings, "cluster.dask.dashboard_port")[1] == "8787"
    ports = _narrow("--apps-path", str(TEST_APPS), "cluster", "ports", "toy", "--set", 'cluster.scheduler="10.0.0.1"',
                    "--set", 'cluster.workers={"10.0.0.2"=2, "10.0.0.3"=1}')
    assert "8786" in ports and "10.0.0.3" in ports


def test_steps_tables(tmp_path):
    (tmp_path / "one.py").write_text("print('one')\n")
    assert run_agi("steps", "add-python", "one.py", cwd=tmp_path).returncode == 0
    assert run_agi("steps", "run", cwd=tmp_path).returncode == 0
    assert _row(_narrow("steps", "list", cwd=tmp_path), "one")[1] == "python"
    runs = _narrow("steps", "runs", cwd=tmp_path)
    assert "ok" in runs.split() and re.search(r"\d\d-\d\d \d\d:\d\d", runs)


def test_wide_tables_drop_borders_and_fold_only_free_text(monkeypatch, capsys):
    """The widest tables (install, doctor, cluster status) rendered through the same helper."""
    from agi_core.cli.cluster_cmds import _print_cluster
    from agi_core.cli.output import table
    from agi_core.cluster.manage import ClusterStatus, WorkerStatus

    monkeypatch.setenv("COLUMNS", "80")
    table("install (3.2 s)", ["host", "roles", "status", "detail", "python", "cores", "gpu", "uploaded", "time"],
          [["10.0.0.12", "scheduler, worker", "[green]installed[/]", "uv venv made, 41 wheels installed from the wheelhouse",
            "3.11.7", 16, "", "1204 files, 31.4 MB", "12.3 s"]])
    table("doctor", ["host", "check", "", "detail", "fix"],
          [["10.0.0.12", "fingerprint", "[red]FAIL[/]", "venv installed for code 1234abcd, this machine has 99aa00ff",
            "run `agi install mandelbrot` to update the hosts"]])
    _print_cluster(ClusterStatus(app="mandelbrot", running=True, address="tcp://10.0.0.1:8786", dashboard="http://10.0.0.1:8787/status",
                                 workers=(WorkerStatus("10.0.0.2-0", "tcp://10.0.0.2:40123", "10.0.0.2", 4),), processes=()), False)
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines() if not line.startswith("mandelbrot: running")) <= 80, out
    assert _row(out, "10.0.0.12")[2:3] == ["installed"] and "12.3 s" in _row(out, "10.0.0.12")
    assert "FAIL" in out and "fingerprint" in out
    assert _row(out, "10.0.0.2-0") == ["10.0.0.2-0", "tcp://10.0.0.2:40123", "4"]
    assert "dashboard http://10.0.0.1:8787/status" in out
