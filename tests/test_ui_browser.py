"""The web UI in a real browser: headless Debian chromium driven by Playwright, against one `agi ui`
server for the whole module (`tests.ui_fixtures`). Screenshots of each page are saved under the
module's temp folder (``screenshots/``), with ``timings.json``, for people to look at."""

from __future__ import annotations

import time

from tests.ui_fixtures import api, browser, expect, finish, open_page, page, settings_file, ui  # noqa: F401 - fixtures


def test_a_request_without_the_token_is_refused(browser, ui):
    context = browser.new_context()
    stranger = context.new_page()
    response = stranger.goto(ui["base"] + "/orchestrate")
    assert response.status == 401 and "token" in stranger.content()
    assert stranger.goto(ui["base"] + "/api/runs").status == 401
    context.close()


def test_edit_a_setting_and_the_file_changes(page, ui):
    open_page(page, ui, "/orchestrate?app=toy", "orchestrate-toy")
    field = page.locator('[name="args.n"]')
    expect(field).to_have_value("6")
    expect(page.locator('.field[data-key="args.n"] .source')).to_have_text("app settings")
    field.fill("8")
    page.click("#save-settings")
    expect(page.locator("#settings-saved")).to_contain_text("args.n")
    text = settings_file(ui).read_text()
    assert "n = 8" in text and "# toy test app" in text  # its comments are kept


def test_an_invalid_value_shows_an_inline_error_and_the_file_is_unchanged(page, ui):
    page.goto(ui["base"] + "/orchestrate?app=toy")
    before = settings_file(ui).read_text()
    page.locator('[name="args.n"]').fill("eight")
    page.click("#save-settings")
    error = page.locator('.field[data-key="args.n"] .field-error')
    expect(error).to_be_visible()
    expect(error).to_contain_text("args.n")
    page.screenshot(path=str(ui["root"] / "screenshots" / "settings-error.png"))
    assert settings_file(ui).read_text() == before


def test_the_distribution_tree_is_shown(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=12", "cluster.pool=true", 'cluster.workers={"127.0.0.1" = 2}']})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    tree = page.locator("#plan-form")
    expect(tree.locator("details.host > summary")).to_contain_text("127.0.0.1")
    expect(tree.locator("details.slot")).to_have_count(2)
    tree.locator('details.slot[data-slot="127.0.0.1-0"] summary').click()
    expect(tree.locator('details.slot[data-slot="127.0.0.1-0"] .part').first).to_be_visible()
    expect(page.locator(".load-chart rect")).to_have_count(2)


def test_move_a_partition_and_the_run_uses_the_edited_plan(page, ui):
    page.goto(ui["base"] + "/orchestrate?app=toy")
    slot = page.locator('details.slot[data-slot="127.0.0.1-0"]')
    slot.locator("summary").click()
    first = slot.locator(".part input").first
    moved = first.get_attribute("value")
    first.check()
    page.select_option("#move-slot", "127.0.0.1-1")
    page.click("#move-button")
    expect(page.locator("#plan-message")).to_contain_text("moved 1 partition")
    expect(page.locator("#plan-edited")).to_be_visible()
    page.screenshot(path=str(ui["root"] / "screenshots" / "distribute-edited.png"), full_page=True)
    page.click("#run-button")
    finish(page, "#run-panel")
    expect(page.locator("#run-panel .job")).to_have_attribute("data-status", "ok")
    expect(page.locator("#run-panel .job-result")).to_contain_text("edited plan")
    run_id = api(page, ui, "GET", "/api/runs?app=toy")[0]["run_id"]
    record = api(page, ui, "GET", f"/api/runs/toy/{run_id}")
    assert {p["id"]: p["slot"] for p in record["partitions"]}[moved] == "127.0.0.1-1"
    api(page, ui, "DELETE", "/api/plan/toy")


def test_a_runs_progress_reaches_100_percent_and_its_image_is_shown(page, ui):
    api(page, ui, "POST", "/api/settings/mandelbrot", {"set": ["width=240", "height=160", "bands=16", "max_iter=60"]})
    page.goto(ui["base"] + "/orchestrate?app=mandelbrot")
    started = time.monotonic()
    page.click("#run-button")
    finish(page, "#run-panel")
    elapsed = time.monotonic() - started
    job = page.locator("#run-panel .job")
    expect(job).to_have_attribute("data-status", "ok")
    expect(job).to_have_attribute("data-progress", "100")
    expect(page.locator("#run-panel .progress-text")).to_contain_text("100%")
    image = page.locator('#run-panel .job-result img[alt="out/mandelbrot.png"]')
    expect(image).to_be_visible()
    # visible first, loaded a moment later: wait for the pixels before reading their width
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=10_000)
    assert image.evaluate("img => img.naturalWidth") == 240
    expect(page.locator("#run-panel .gantt rect")).to_have_count(16)
    expect(page.locator("#run-panel .worker")).not_to_have_count(0)
    ui["timings"]["mandelbrot run: SSE messages"] = int(job.get_attribute("data-messages"))
    ui["timings"]["mandelbrot run: seconds from click to end"] = round(elapsed, 2)
    page.screenshot(path=str(ui["root"] / "screenshots" / "orchestrate-run.png"), full_page=True)


def test_progress_updates_arrive_while_a_run_runs(page, ui):
    # each partition sleeps 0.1 s: the page gets a batch of events per tick, not one at the end
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=30", "args.sleep=0.1", "cluster.pool=true", 'cluster.workers={"127.0.0.1" = 2}']})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    started = time.monotonic()
    page.click("#run-button")
    finish(page, "#run-panel")
    elapsed = time.monotonic() - started
    messages = int(page.locator("#run-panel .job").get_attribute("data-messages"))
    assert messages > 3  # more than the run's start and end: progress streamed
    ui["timings"]["toy run (30 x 0.1 s): SSE messages per second"] = round(messages / elapsed, 1)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0"]})


def test_the_cancel_button_stops_a_run(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=40", "args.sleep=0.2", "cluster.pool=false"]})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.click("#run-button")
    expect(page.locator("#run-panel .gantt rect")).not_to_have_count(0)  # partitions are finishing
    page.locator("#run-panel .job .cancel").click()
    finish(page, "#run-panel")
    expect(page.locator("#run-panel .job")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#run-panel .job .cancel")).to_have_count(0)
    expect(page.locator("#run-panel .job-result")).to_contain_text("cancelled from the UI")
    run_id = api(page, ui, "GET", "/api/runs?app=toy")[0]["run_id"]
    assert api(page, ui, "GET", f"/api/runs/toy/{run_id}")["status"] == "interrupted"
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0"]})


def test_add_a_step_and_it_is_in_lab_steps_toml(page, ui):
    page.goto(ui["base"] + "/orchestrate?app=toy")
    page.fill('#snippet-panel [name="step_id"]', "square")
    page.click("#add-step")
    expect(page.locator("#snippet-panel .snippet-msg .alert.ok")).to_contain_text("square")
    api(page, ui, "POST", "/api/steps", {"app": "mandelbrot", "kind": "run", "id": "render"})
    text = ui["config"].steps_file.read_text()
    assert 'id = "square"' in text and "kind = \"run\"" in text and 'id = "render"' in text
    assert 'deps = ["square"]' in text  # a step added without deps runs after the one before it


def test_run_the_pipeline(page, ui):
    open_page(page, ui, "/pipeline", "pipeline")
    expect(page.locator(".step")).to_have_count(2)
    page.click("#run-all")
    finish(page, "#steps-panel")
    expect(page.locator("#steps-panel .job")).to_have_attribute("data-status", "ok")
    expect(page.locator(".step")).to_have_count(2)
    for step in ("square", "render"):
        expect(page.locator(f'.step[data-step="{step}"] [data-status]')).to_have_text("ok")
    page.screenshot(path=str(ui["root"] / "screenshots" / "pipeline-run.png"), full_page=True)
    page.goto(ui["base"] + "/pipeline")
    link = page.locator('.step[data-step="render"] [data-runs] a').first
    link.click()
    expect(page.locator(".facts")).to_contain_text("render")  # the step's run record names the step


def test_a_stale_step_is_refreshed_from_its_row_or_from_the_refused_runs_error(page, ui):
    """Errors as actions: a step whose app settings changed is reported stale with a refresh button;
    a pipeline run refused for stale steps offers "Refresh the stale steps" beside its fix."""
    from agi_core.pipeline import load_pipeline

    settings = settings_file(ui)
    before = settings.read_text()
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=7"]})  # the "square" step (toy) is stale now
    try:
        page.goto(ui["base"] + "/pipeline")
        square = page.locator('.step[data-step="square"]')
        expect(square.locator(".stale-note")).to_contain_text("args.n was 6, is now 7")
        square.locator("#refresh-square").click()
        expect(square.locator(".stale-note")).to_have_count(0)
        assert load_pipeline(ui["config"].steps_file).get("square").settings_values["args.n"] == "7"

        api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=8"]})
        page.goto(ui["base"] + "/pipeline")
        page.click("#run-all")
        finish(page, "#steps-panel")
        expect(page.locator("#steps-panel .job")).to_have_attribute("data-status", "failed")
        expect(page.locator("#steps-panel .job-result")).to_contain_text("stale step(s), not run: square")
        page.screenshot(path=str(ui["root"] / "screenshots" / "stale-step-action.png"), full_page=True)
        page.click("#action-refresh-stale")
        expect(page.locator('.step[data-step="square"] .stale-note')).to_have_count(0)
        assert load_pipeline(ui["config"].steps_file).get("square").settings_values["args.n"] == "8"
    finally:
        settings.write_text(before)
    page.goto(ui["base"] + "/pipeline")
    page.click("#refresh-square")  # back to the module's settings (stale again), for the tests after this one
    expect(page.locator('.step[data-step="square"] .stale-note')).to_have_count(0)


def test_runs_page_filters_and_a_record_shows_its_report(page, ui):
    open_page(page, ui, "/runs", "runs")
    page.select_option('.filters [name="app"]', "mandelbrot")
    expect(page.locator("#runs-table tbody tr").first).to_contain_text("mandelbrot")
    page.locator("#runs-table tbody a").first.click()
    page.click("#make-report")
    expect(page.locator('.figures img[alt="gantt.png"]')).to_be_visible()
    open_page(page, ui, page.url.removeprefix(ui["base"]), "run-record")
    page.click("#export")
    expect(page.locator("#export-msg")).to_contain_text("bundle written")


def test_a_plan_of_10000_partitions_shows_its_tree_folded(page, ui):
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=10000", "cluster.pool=true", 'cluster.workers={"127.0.0.1" = 8}']})
    page.goto(ui["base"] + "/orchestrate?app=toy")
    expect(page.locator("#plan-form details.slot")).to_have_count(8)
    expect(page.locator(".plan-head")).to_contain_text("10000 partitions")
    started = time.monotonic()
    page.locator('details.slot[data-slot="127.0.0.1-3"] summary').click()
    expect(page.locator('details.slot[data-slot="127.0.0.1-3"] .part')).to_have_count(200)
    ui["timings"]["10,000 partitions: open a slot (200 rows), s"] = round(time.monotonic() - started, 3)
    page.locator('details.slot[data-slot="127.0.0.1-3"] .more').click()
    expect(page.locator('details.slot[data-slot="127.0.0.1-3"] .part')).to_have_count(400)
    page.screenshot(path=str(ui["root"] / "screenshots" / "distribute-10000.png"), full_page=False)
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6"]})
