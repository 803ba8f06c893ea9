"""Live runs in a real browser (`tests.ui_fixtures`): cancelling a cluster run while it starts leaves
no process behind; Run cannot start twice; a running run is found again after a reload, from another
tab, after the UI server restarts, and when it was started from the command line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT
from tests.ui_fixtures import api, browser, expect, finish, login, page, ui  # noqa: F401 - fixtures


def _children() -> set[int]:
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}


def _left_behind(before: set[int]) -> list[str]:
    """The processes started since ``before`` that are still alive once they had time to stop."""
    procs = [psutil.Process(pid) for pid in _children() - before if psutil.pid_exists(pid)]
    # the browser, and multiprocessing's resource tracker (one per process, lives as long as it)
    procs = [p for p in procs if "chrom" not in p.name() and "node" not in p.name() and "resource_tracker" not in " ".join(p.cmdline())]
    _, alive = psutil.wait_procs(procs, timeout=30)
    return [f"{p.pid} ppid={p.ppid()} " + " ".join(p.cmdline()) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("when", ["0.3 s after Run", "while the cluster starts"])
def test_cancelling_a_cluster_run_as_it_starts_leaves_no_process(page, ui, when):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=8", "args.sleep=0.2", "cluster.pool=false", "cluster.cluster_enabled=true", _fresh(),
                                                         'cluster.workers={"127.0.0.1" = 2}']})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    before = _children()
    page.click("#run-button")
    cancel = page.locator("#run-panel .job .cancel")
    expect(cancel).to_be_visible()
    if when == "0.3 s after Run":
        time.sleep(0.3)
    else:
        expect(page.locator("#run-panel .job .phase")).to_contain_text("Dask cluster")
    cancel.click()
    finish(page, "#run-panel")
    expect(page.locator("#run-panel .job")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#run-panel .job .spinner")).to_have_class(re.compile(r"\bst-end-cancelled\b"))  # not green
    assert _left_behind(before) == []
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0", "cluster.cluster_enabled=false", "cluster.workers={}"]})


def _fresh() -> str:
    """An offset no run used yet: the toy's cache keys read it, so every partition is computed (and sleeps)."""
    return f"args.offset={time.monotonic_ns() % 10**9}"


def _run_ids(page, ui) -> list[str]:
    return [r["run_id"] for r in api(page, ui, "GET", "/api/runs?app=toy")]


def test_a_double_click_on_run_starts_one_run(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=10", "args.sleep=0.05", "cluster.pool=false", _fresh()]})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    before = _run_ids(page, ui)
    page.dblclick("#run-button")
    finish(page, "#run-panel")
    expect(page.locator("#run-panel .job")).to_have_attribute("data-status", "ok")
    expect(page.locator("#run-button")).to_be_enabled()
    assert len(_run_ids(page, ui)) == len(before) + 1
    # Run pressed again while a run runs (another tab, a script): the running one is shown, none started
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=12", "args.sleep=0.25", _fresh()]})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.click("#run-button")
    other = login(page.context.browser, ui)
    other.goto(ui["base"] + "/orchestrate?app=toy")
    expect(other.locator("#run-panel .job")).to_have_count(1)
    expect(other.locator("#run-button")).to_be_disabled()
    finish(page, "#run-panel")
    finish(other, "#run-panel")
    assert len(_run_ids(page, ui)) == len(before) + 2
    other.context.close()
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0"]})


def test_a_reload_during_a_run_finds_it_and_follows_it_to_the_end(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=40", "args.sleep=0.25", "cluster.pool=true", 'cluster.workers={"127.0.0.1" = 2}', _fresh()]})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.click("#run-button")
    expect(page.locator("#run-panel .gantt rect")).not_to_have_count(0)
    page.reload()
    job = page.locator("#run-panel .job")
    expect(job).to_have_count(1)
    expect(job.locator(".cancel")).to_be_visible()  # still cancellable after the reload
    page.screenshot(path=str(ui["root"] / "screenshots" / "run-after-reload.png"), full_page=True)
    run_id = _run_ids(page, ui)[0]
    record_page = login(page.context.browser, ui)  # another tab, on the record's page
    record_page.goto(f"{ui['base']}/runs/toy/{run_id}")
    expect(record_page.locator("#run-live .job")).to_have_count(1)
    finish(page, "#run-panel")
    expect(job).to_have_attribute("data-status", "ok")
    expect(job).to_have_attribute("data-progress", "100")
    expect(page.locator("#run-panel .gantt rect")).to_have_count(40)
    finish(record_page, "#run-live")
    expect(record_page.locator("#run-live .job")).to_have_attribute("data-status", "ok")
    record_page.context.close()
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0", "cluster.pool=false", "cluster.workers={}"]})


def test_a_cli_run_appears_live_and_is_followed_from_its_record(page, ui):
    """A run this server did not start (the CLI's; or one from before `agi ui` restarted) is read
    from its manifest and partition log."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    cli = subprocess.Popen([sys.executable, "-m", "agi_core.cli", "run", "toy", "--apps-path", str(ui["apps"]),
                            "--set", f'cluster.workers_data_path="{ui["config"].share}"', "--set", "n=20", "--set", "sleep=0.3", "--set", _fresh()],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        runs = page.locator("#runs-table .live-link")
        page.goto(ui["base"] + "/runs")
        while not runs.count():
            assert cli.poll() is None, cli.stdout.read()
            time.sleep(0.3)
            page.reload()
        page.screenshot(path=str(ui["root"] / "screenshots" / "runs-with-a-live-run.png"), full_page=True)
        page.goto(ui["base"] + "/orchestrate?app=toy")
        job = page.locator("#run-panel .job[data-events]")
        expect(job).to_have_count(1)
        finish(page, "#run-panel")
        expect(job).to_have_attribute("data-status", "ok")
        expect(page.locator("#run-panel .job-result")).to_contain_text("done")
        assert page.locator("#run-panel .gantt rect").count() == 20
        assert cli.wait(60) == 0
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_compare_modes_runs_each_mode_and_shows_wall_times_and_speedups(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=8", "args.sleep=0.1", 'cluster.workers={"127.0.0.1" = 2}']})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    before = _run_ids(page, ui)
    page.click("#compare summary")
    for mode in ("0", "1", "4", "5"):
        expect(page.locator(f'#compare [name="mode"][value="{mode}"]')).to_be_checked()
    page.uncheck('#compare [name="mode"][value="5"]')
    page.click("#compare-button")
    expect(page.locator("#compare-panel .gantt rect")).not_to_have_count(0)  # the first mode runs
    page.reload()  # the compare job is found again, and followed to its end
    expect(page.locator("#compare-panel .job")).to_have_count(1)
    finish(page, "#compare-panel")
    expect(page.locator("#compare-panel .job")).to_have_attribute("data-status", "ok")
    table = page.locator("#compare-table")
    expect(table.locator("tbody tr")).to_have_count(3)
    assert [table.locator("tbody tr").nth(i).get_attribute("data-mode") for i in range(3)] == ["0", "1", "4"]
    expect(table.locator("tbody tr").first.locator(".speedup")).to_have_text("×1.00")
    assert len(_run_ids(page, ui)) == len(before) + 3
    for row in range(3):  # each mode computed its 8 partitions: none came from the cache
        run_id = table.locator("tbody tr").nth(row).locator("a").inner_text()
        assert api(page, ui, "GET", f"/api/runs/toy/{run_id}")["totals"]["ok"] == 8
    page.screenshot(path=str(ui["root"] / "screenshots" / "compare-modes.png"), full_page=True)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0", "cluster.workers={}"]})


def test_a_cluster_start_shows_the_scheduler_and_each_worker_joining(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=4", "cluster.pool=false", "cluster.cluster_enabled=true",
                                                         'cluster.workers={"127.0.0.1" = 2}', _fresh()]})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.click("#run-button")
    finish(page, "#run-panel")
    job = page.locator("#run-panel .job")
    expect(job).to_have_attribute("data-status", "ok")
    expect(job.locator('.host-row[data-host="scheduler"]')).to_contain_text("up at tls://127.0.0.1:")
    for slot in ("127.0.0.1-0", "127.0.0.1-1"):
        row = job.locator(f'.host-row[data-host="{slot}"]')
        expect(row).to_contain_text("joined")
        expect(row).to_have_class(re.compile(r"\bdone\b"))
        row.locator("summary").click()  # its log: every step, with its time
        expect(row.locator(".h-log")).to_contain_text("starting")
        expect(row.locator(".h-log")).to_contain_text("joined")
    page.screenshot(path=str(ui["root"] / "screenshots" / "cluster-start.png"), full_page=True)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "cluster.cluster_enabled=false", "cluster.workers={}"]})


def test_a_second_ui_server_follows_a_run_it_did_not_start(page, ui):
    """As after `agi ui` restarts: a server without the run's job finds it from the record."""
    from tests.ui_fixtures import serve

    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=24", "args.sleep=0.25", "cluster.pool=false", _fresh()]})
    api(page, ui, "POST", "/api/run/toy")
    while not [r for r in api(page, ui, "GET", "/api/live")["records"] if r["app"] == "toy"]:  # its process has started it
        time.sleep(0.1)
    server, thread, base = serve(ui["config"])
    try:
        other = login(page.context.browser, {**ui, "base": base})
        other.goto(base + "/orchestrate?app=toy")
        job = other.locator("#run-panel .job[data-events]")  # followed from the record, not a job of this server
        expect(job).to_have_count(1)
        finish(other, "#run-panel")
        expect(job).to_have_attribute("data-status", "ok")
        assert other.locator("#run-panel .gantt rect").count() == 24
        other.context.close()
    finally:
        server.should_exit = True
        thread.join(10)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0"]})


def _agi_ui(ui) -> tuple[subprocess.Popen, str, str]:
    """``agi ui`` as a user starts it, in its own process, on the module's apps, share and state:
    (process, base URL, token)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300", "XDG_STATE_HOME": str(ui["config"].state_dir().parents[1])}
    server = subprocess.Popen([sys.executable, "-m", "agi_core.cli", "ui", "toy", "--apps-path", str(ui["apps"]), "--port", "0",
                               "--share", str(ui["config"].share), "--file", str(ui["config"].steps_file)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in server.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=([\w-]+)", line)
        if found:
            break
    else:
        raise AssertionError(f"agi ui printed no URL (exit status {server.wait()})")
    while True:  # the URL is printed as the socket is bound: it answers once uvicorn runs
        try:
            socket.create_connection(("127.0.0.1", int(found[1].rsplit(":", 1)[1])), timeout=1).close()
            return server, found[1], found[2]
        except ConnectionRefusedError:
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.05)


def _run_from_a_ui_that_stops(page, ui, pool: bool) -> str:
    """Start a run from a separate `agi ui`, wait for its first partitions, stop that server as
    Ctrl-C does; returns the run's id (its process still runs)."""
    from agi_core.ui.detached import process_of_run

    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=24", "args.sleep=0.3", f"cluster.pool={str(pool).lower()}",
                                                         'cluster.workers={"127.0.0.1" = 2}', _fresh()]})
    server, base, token = _agi_ui(ui)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        job = page.request.post(base + "/api/run/toy", headers=auth).json()
        while (state := page.request.get(f"{base}/api/jobs/{job['id']}", headers=auth).json())["events"] < 5:
            assert state["status"] == "running", state
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(30) in (0, 130)  # 130: stopped by Ctrl-C
    run_id = _run_ids(page, ui)[0]
    assert process_of_run(ui["config"].state_dir(), run_id) is not None  # its server stopped; it did not
    return run_id


def test_a_ui_run_outlives_agi_ui_and_a_restarted_server_follows_it_to_the_end(page, ui):
    run_id = _run_from_a_ui_that_stops(page, ui, pool=False)
    page.goto(ui["base"] + "/orchestrate?app=toy")  # the module's server: as `agi ui` started again
    job = page.locator("#run-panel .job[data-events]")  # followed from the record
    expect(job).to_have_count(1)
    expect(job.locator(".cancel")).to_be_visible()  # a UI-started run: its process is found, it can be stopped
    expect(page.locator("#run-panel .gantt rect")).not_to_have_count(0)
    page.screenshot(path=str(ui["root"] / "screenshots" / "run-after-agi-ui-restarted.png"), full_page=True)
    finish(page, "#run-panel")
    expect(job).to_have_attribute("data-status", "ok")
    expect(job).to_have_attribute("data-progress", "100")
    expect(page.locator("#run-panel .gantt rect")).to_have_count(24)
    assert api(page, ui, "GET", f"/api/runs/toy/{run_id}")["totals"]["ok"] == 24
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0", "cluster.workers={}"]})


def test_a_restarted_server_cancels_a_ui_run_and_everything_it_started(page, ui):
    from agi_core.ui.detached import process_of_run

    run_id = _run_from_a_ui_that_stops(page, ui, pool=True)
    run = psutil.Process(process_of_run(ui["config"].state_dir(), run_id).pid)
    started = [run, *run.children(recursive=True)]  # the run and its pool processes
    assert len(started) > 1
    page.goto(f"{ui['base']}/runs/toy/{run_id}")
    job = page.locator("#run-live .job[data-events]")
    expect(job).to_have_count(1)
    job.locator(".cancel").click()
    finish(page, "#run-live")
    expect(job).to_have_attribute("data-status", "cancelled")
    record = api(page, ui, "GET", f"/api/runs/toy/{run_id}")
    assert record["status"] == "interrupted" and record["totals"]["ok"] < 24
    _, alive = psutil.wait_procs(started, timeout=30)
    assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0", "cluster.pool=false", "cluster.workers={}"]})


def test_a_cluster_runs_page_offers_the_dask_dashboards_key_plots(page, ui):
    """While a cluster run runs, its record page links and frames the dashboard's key plots
    (routes distributed serves); a cluster without a dashboard says why, not a dead link."""
    from agi_core.ui.dashboard import PLOTS

    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=16", "args.sleep=0.4", "cluster.pool=false", "cluster.cluster_enabled=true",
                                                         'cluster.workers={"127.0.0.1" = 2}', _fresh()]})
    api(page, ui, "POST", "/api/run/toy")
    while not (live := [r for r in api(page, ui, "GET", "/api/live")["records"] if r["app"] == "toy"]):
        time.sleep(0.1)
    run_id = live[0]["run_id"]
    page.goto(f"{ui['base']}/runs/toy/{run_id}")
    links = page.locator("#run-live .dashboard-links a[data-plot]")
    expect(links).to_have_count(len(PLOTS))
    page.locator("#run-live .dash-plots summary").click()
    frames = page.locator("#run-live .dash-plots iframe")
    expect(frames).to_have_count(len(PLOTS))
    for i, (path, _) in enumerate(PLOTS):
        src = frames.nth(i).get_attribute("src")
        assert src.endswith("/" + path) and page.request.get(src).ok, src  # distributed serves it while the run runs
    expect(page.frame_locator("#run-live .dash-plots iframe").first.locator(".bk-Figure, .bk-root, div").first).to_be_attached()
    page.screenshot(path=str(ui["root"] / "screenshots" / "dashboard-plots.png"), full_page=True)
    finish(page, "#run-live")
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "cluster.cluster_enabled=false", "cluster.workers={}"]})


def test_a_cluster_run_where_bokeh_is_missing_says_so_instead_of_a_dead_link(page, ui, tmp_path, monkeypatch):
    hidden = tmp_path / "no-bokeh"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text("import sys\nsys.modules['bokeh'] = None  # bokeh cannot be imported here\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(hidden), os.environ.get("PYTHONPATH")) if p))  # the run's process
    monkeypatch.setitem(sys.modules, "bokeh", None)  # and this server's
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=4", "args.sleep=0.0", "cluster.pool=false", "cluster.cluster_enabled=true",
                                                         'cluster.workers={"127.0.0.1" = 1}', _fresh()]})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.click("#run-button")
    finish(page, "#run-panel")
    expect(page.locator("#run-panel .job")).to_have_attribute("data-status", "ok")
    expect(page.locator("#run-panel .job .no-dashboard")).to_have_text(
        "no Dask dashboard: bokeh is not installed here (pip install bokeh, then run again)")
    expect(page.locator("#run-panel .job .dashboard-links")).to_have_count(0)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "cluster.cluster_enabled=false", "cluster.workers={}"]})
