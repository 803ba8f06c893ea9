"""The ORCHESTRATE page's settings in a real browser (`tests.ui_fixtures`): the worker map saved from
the form, panels that follow a save, unsaved edits marked, the mode hint for every mode."""

from __future__ import annotations

import re
import tomllib

from tests.ui_fixtures import api, browser, expect, open_page, page, settings_file, ui  # noqa: F401 - fixtures


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
    page.click("#save-settings")
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
