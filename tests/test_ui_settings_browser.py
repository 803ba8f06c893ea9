"""Pages and settings in a real browser (`tests.ui_fixtures`): the worker map saved from the form,
panels that follow a save, unsaved edits marked, the small things (errors, favicon, failure colours), the mode hint."""

from __future__ import annotations

import re
import time
import tomllib

import pytest

from tests.conftest import run_agi
from tests.ui_fixtures import api, browser, expect, finish, open_page, page, settings_file, ui  # noqa: F401 - fixtures


def test_a_two_host_worker_map_is_saved_from_the_form(page, ui):
    open_page(page, ui, "/orchestrate?app=toy", "settings-before-map")
    page.get_by_role("button", name="+ host").click()
    page.locator(".worker-row").last.locator('[name="worker_host"]').fill("127.0.0.1")
    page.locator(".worker-row").last.locator('[name="worker_count"]').fill("3")
    page.get_by_role("button", name="+ host").click()
    page.locator(".worker-row").last.locator('[name="worker_host"]').fill("10.0.0.2")
    page.locator(".worker-row").last.locator('[name="worker_count"]').fill("2")
    page.click("#save-settings")
    expect(page.locator("#settings-saved")).to_contain_text("cluster.workers")
    assert tomllib.loads(settings_file(ui).read_text())["cluster"]["workers"] == {"127.0.0.1": 3, "10.0.0.2": 2}
    # the form shows the saved map; a changed count is saved too
    rows = page.locator(".worker-row")
    expect(rows).to_have_count(2)
    rows.nth(1).locator('[name="worker_count"]').fill("4")
    with page.expect_response(lambda r: r.url.endswith("/orchestrate/toy/settings") and r.request.method == "POST"):
        page.click("#save-settings")  # the message of the first save is on the page until this answer
    expect(page.locator("#settings-saved")).to_contain_text("cluster.workers")
    assert tomllib.loads(settings_file(ui).read_text())["cluster"]["workers"] == {"127.0.0.1": 3, "10.0.0.2": 4}
    page.screenshot(path=str(ui["root"] / "screenshots" / "settings-two-host-map.png"), full_page=True)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["cluster.workers={}"]})


def test_unsaved_edits_are_marked_and_a_save_refreshes_the_plan_and_the_snippet(page, ui):
    page.goto(ui["base"] + "/orchestrate?app=toy")
    expect(page.locator("#snippet-panel code")).to_contain_text("'n': 6")
    expect(page.locator(".plan-head")).to_contain_text("6 partitions")
    page.locator('[name="args.n"]').fill("9")
    expect(page.locator('.field[data-key="args.n"]')).to_have_class(re.compile(r"\bdirty\b"))
    expect(page.locator("#unsaved")).to_be_visible()  # Run would use the saved n = 6: said
    page.screenshot(path=str(ui["root"] / "screenshots" / "settings-unsaved.png"), full_page=True)
    page.click("#save-settings")
    expect(page.locator("#settings-saved")).to_contain_text("args.n")
    expect(page.locator("#unsaved")).to_be_hidden()
    expect(page.locator(".settings .dirty")).to_have_count(0)
    expect(page.locator(".plan-head")).to_contain_text("9 partitions")  # not the plan of n = 6
    expect(page.locator("#snippet-panel code")).to_contain_text("'n': 9")  # Copy gives code for the saved settings
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6"]})


def test_a_field_error_names_its_key_once(page, ui):
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.locator('[name="args.n"]').fill("eight")
    page.click("#save-settings")
    error = page.locator('.field[data-key="args.n"] .field-error')
    expect(error).to_contain_text("valid integer")
    assert error.inner_text().count("args.n") == 1, error.inner_text()


def test_a_nul_byte_in_a_file_path_is_not_found(page, ui):
    assert page.request.get(ui["base"] + "/files/toy/run%00/manifest.json").status == 404


def test_an_unknown_app_in_the_url_gets_a_whole_page_and_404(page, ui):
    response = page.goto(ui["base"] + "/orchestrate?app=nosuchapp")
    assert response.status == 404
    expect(page.locator(".topbar")).to_be_visible()  # styled, with its navigation
    expect(page.locator("#page-error")).to_contain_text("unknown app 'nosuchapp'")
    expect(page.locator("#page-error .fix")).to_contain_text("toy")
    page.screenshot(path=str(ui["root"] / "screenshots" / "unknown-app.png"))


def test_the_favicon_is_served(page, ui):
    response = page.request.get(ui["base"] + "/favicon.ico")
    assert response.status == 200 and b"<svg" in response.body()


def test_a_run_with_a_failed_partition_is_not_painted_as_a_success(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=8", "args.fail_on=[3]", "cluster.pool=true", 'cluster.workers={"127.0.0.1" = 2}']})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.click("#run-button")
    finish(page, "#run-panel")
    job = page.locator("#run-panel .job")
    expect(job).to_have_attribute("data-status", "failed")
    expect(job.locator(".spinner")).to_have_class(re.compile(r"\bst-end-failed\b"))  # not the green dot
    expect(job.locator(".progress")).to_have_class(re.compile(r"\bhas-failed\b"))
    expect(job.locator(".progress-text")).to_contain_text("1 failed")
    worker = job.locator(".worker").filter(has_text="failed")
    expect(worker).to_have_count(1)
    widths = worker.evaluate("w => [w.querySelector('.w-bar').getBoundingClientRect().width, "
                             "w.querySelector('.w-fail').getBoundingClientRect().width]")
    assert widths[0] > widths[1] > 0  # one failure of four is a quarter of the bar, not all of it
    page.screenshot(path=str(ui["root"] / "screenshots" / "run-with-a-failure.png"), full_page=True)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.fail_on=[]", "cluster.pool=false", "cluster.workers={}"]})


def test_plan_loads_are_shares_of_the_makespan_then_seconds_once_the_app_ran(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=8", "args.sleep=0.1", "args.offset=17", "cluster.pool=true",
                                                         'cluster.workers={"127.0.0.1" = 2}']})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    expect(page.locator("#plan-makespan")).to_have_text("makespan 100%")  # no run of it yet: no seconds
    expect(page.locator('details.slot[data-slot="127.0.0.1-0"] summary')).to_contain_text("% of the makespan")
    assert "e+" not in page.locator("#plan").inner_text()
    page.click("#run-button")
    finish(page, "#run-panel")
    expect(page.locator("#run-panel .job")).to_have_attribute("data-status", "ok")
    page.reload()
    expect(page.locator("#plan-estimate")).to_contain_text("estimated from run")
    makespan = page.locator("#plan-makespan").inner_text()
    seconds = float(makespan.split("≈ ")[1].removesuffix(" s"))
    assert seconds > 0, makespan  # 4 partitions of 0.1 s on the busiest slot
    expect(page.locator('details.slot[data-slot="127.0.0.1-0"] summary')).to_contain_text("≈")
    page.screenshot(path=str(ui["root"] / "screenshots" / "plan-in-seconds.png"), full_page=True)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0", "args.offset=0", "cluster.pool=false", "cluster.workers={}"]})


def _expected_hint(mode: int) -> list[str]:
    """What the hint of ``mode`` must say, with a worker map of 3 processes on this machine."""
    words = []
    if mode & 4:
        words += ["Dask, 3 worker processes on this machine", "more threads in each (pool)" if mode & 1 else "one partition at a time"]
    elif mode & 1:
        words += ["a pool of 3 processes on this machine, no Dask"]
    else:
        words += ["in the agi process itself"]
    if mode & 8:
        words += ["GPU kernels where a worker has a GPU", ("Cython" if mode & 2 else "Python") + " kernels elsewhere"]
    else:
        words += ["compiled Cython kernels" if mode & 2 else "Python kernels"]
    return words


@pytest.mark.parametrize("mode", range(16))
def test_the_mode_hint_says_each_mode_in_words(page, ui, mode):
    from agi_core.base.modes import Mode

    if mode == 0:
        api(page, ui, "POST", "/api/settings/toy", {"set": ['cluster.workers={"127.0.0.1" = 3}']})
    if mode == 0 or "orchestrate" not in page.url:
        page.goto(ui["base"] + "/orchestrate?app=toy")
    hint = page.locator("#mode-hint")
    for bit, key in ((1, "cluster.pool"), (2, "cluster.cython"), (4, "cluster.cluster_enabled")):
        if page.locator(f'[name="{key}"]').is_checked() != bool(mode & bit):  # unsaved: the hint follows the form
            page.locator(f'.field[data-key="{key}"] .switch span').click()
    page.select_option('[name="cluster.rapids"]', "on" if mode & 8 else "off")
    expect(hint).to_contain_text(f"mode {mode} ({Mode(mode).letters or '-'}):")
    for words in _expected_hint(mode):
        expect(hint).to_contain_text(words)
    if mode == 5:
        page.screenshot(path=str(ui["root"] / "screenshots" / "mode-hint-5.png"))
    if mode == 15:
        api(page, ui, "POST", "/api/settings/toy", {"set": ["cluster.workers={}"]})


@pytest.fixture(scope="module")
def big_run(ui):
    """A toy run of 100,000 partitions, two of them failed, recorded in the module's share (by the CLI)."""
    share = ui["config"].share
    done = run_agi("run", "toy", "--apps-path", str(ui["apps"]), "--set", f'cluster.workers_data_path="{share}"', "--set", "n=100000",
                   "--set", "fail_on=[7,77777]", "--set", "offset=5", "--no-cache", timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # its two failures
    return sorted((share / "runs" / "toy").iterdir())[-1].name


def test_the_record_page_of_100000_partitions_filters_sorts_and_finds(page, ui, big_run):
    started = time.monotonic()
    open_page(page, ui, f"/runs/toy/{big_run}", "record-100000")
    ui["timings"]["100,000-partition record page, first load (parses the manifest), s"] = round(time.monotonic() - started, 3)
    open_page(page, ui, f"/runs/toy/{big_run}", "record-100000")  # the record is kept read: timed in timings.json
    expect(page.locator("#partition-count")).to_contain_text("100000 of 100000 partitions · showing 1–300")
    page.select_option('#partition-filters [name="status"]', "failed")
    expect(page.locator("#partition-count")).to_contain_text("2 of 100000")
    expect(page.locator("#partition-table tbody tr")).to_have_count(2)
    page.select_option('#partition-filters [name="status"]', "")
    page.fill("#partition-q", "p77777")
    expect(page.locator("#partition-table tbody tr").first).to_have_attribute("data-pid", "p77777")  # the exact id first
    page.fill("#partition-q", "")
    page.select_option('#partition-filters [name="sort"]', "duration")
    page.check('#partition-filters [name="desc"]')
    expect(page.locator("#partition-count")).to_contain_text("showing 1–300")
    durations = [float(t.removesuffix(" s")) for t in page.locator("#partition-table tbody tr td:nth-child(5)").all_inner_texts()]
    assert durations == sorted(durations, reverse=True) and len(durations) == 300
    page.click("#partitions-next")
    expect(page.locator("#partition-count")).to_contain_text("showing 301–600")
    page.screenshot(path=str(ui["root"] / "screenshots" / "record-100000-sorted.png"), full_page=True)


def test_page_loads_at_10000_partitions_are_timed(page, ui):
    """Not a threshold: the timings go to timings.json (docs/ui.md quotes them)."""
    share = ui["config"].share
    done = run_agi("run", "toy", "--apps-path", str(ui["apps"]), "--set", f'cluster.workers_data_path="{share}"', "--set", "n=10000",
                   "--set", "offset=9", "--no-cache", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = sorted((share / "runs" / "toy").iterdir())[-1].name
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=10000", "cluster.pool=true", 'cluster.workers={"127.0.0.1" = 8}']})
    for attempt in ("first", "again"):
        for path in ("/orchestrate?app=toy", "/runs", f"/runs/toy/{run_id}"):
            open_page(page, ui, path, f"10000-{path.strip('/').replace('/', '-').replace('?', '-')}")
            ui["timings"][f"10,000 partitions: load {path.split('/' + run_id)[0]} ({attempt}), ms"] = ui["timings"].pop(f"load {path}")
        started = time.monotonic()
        assert page.request.get(ui["base"] + "/orchestrate/toy/plan").ok
        ui["timings"][f"10,000 partitions: the plan panel ({attempt}), ms"] = round(1000 * (time.monotonic() - started), 1)
    expect(page.locator("#partition-count")).to_contain_text("10000 of 10000")
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "cluster.pool=false", "cluster.workers={}"]})


def test_the_gantt_zooms_and_report_figures_open_full_size(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=8", "args.offset=21", "cluster.pool=true", 'cluster.workers={"127.0.0.1" = 2}']})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.click("#run-button")
    finish(page, "#run-panel")
    job = page.locator("#run-panel .job")
    fit = float(job.locator(".gantt").evaluate("svg => svg.getBoundingClientRect().width"))
    job.locator(".zoom-in").click()
    job.locator(".zoom-in").click()
    expect(job.locator(".zoom-level")).to_have_text("×4")
    zoomed = float(job.locator(".gantt").get_attribute("width"))
    assert zoomed > 3 * fit  # four times as wide, scrolled sideways in its box
    job.locator(".zoom-fit").click()
    expect(job.locator(".gantt")).to_have_attribute("width", "100%")
    job.locator(".job-result a").first.click()  # the run's record
    page.click("#make-report")
    link = page.locator('.figures a.full-size:has(img[alt="gantt.png"])')
    expect(link).to_be_visible()
    assert link.get_attribute("target") == "_blank"
    full = page.request.get(ui["base"] + link.get_attribute("href"))
    assert full.ok and full.headers["content-type"] == "image/png"
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.offset=0", "cluster.pool=false", "cluster.workers={}"]})


def test_a_stale_edited_plan_is_an_error_with_its_fix_as_a_button(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=8", "cluster.pool=true", 'cluster.workers={"127.0.0.1" = 2}']})
    api(page, ui, "POST", "/api/plan/toy/move", {"partitions": ["p0"], "slot": "127.0.0.1-1"})
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=9"]})  # the edited plan is now stale
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.click("#run-button")
    finish(page, "#run-panel")
    expect(page.locator("#run-panel .job")).to_have_attribute("data-status", "failed")
    expect(page.locator("#run-panel .job-result")).to_contain_text("stale")
    page.screenshot(path=str(ui["root"] / "screenshots" / "error-as-action.png"), full_page=True)
    page.click("#action-discard-plan")
    expect(page.locator("#plan")).to_contain_text("edits discarded")
    expect(page.locator(".plan-head")).to_contain_text("9 partitions")
    page.click("#run-button")
    finish(page, "#run-panel")
    expect(page.locator("#run-panel .job")).to_have_attribute("data-status", "ok")
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "cluster.pool=false", "cluster.workers={}"]})
