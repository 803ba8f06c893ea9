"""The ORCHESTRATE page's settings in a real browser (`tests.ui_fixtures`): the worker map saved from
the form, panels that follow a save, unsaved edits marked, the mode hint for every mode."""

from __future__ import annotations

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
