"""Shared by the browser test modules: one `agi ui` server (uvicorn, in a thread) and one headless
Debian chromium (Playwright) per module, and the helpers the tests use. Skipped, with the reason,
without chromium or playwright. Screenshots go to the module's temp folder (``screenshots/``),
with ``timings.json`` (page loads, SSE messages per second), for people to look at."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_APPS

CHROMIUM = Path("/usr/bin/chromium")

pytest.importorskip("fastapi", reason="the web UI needs the ui extra: pip install 'agi-orchestrator[ui]'")
pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium here: apt-get install chromium (browsers are not downloaded)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from agi_core.ui import UiConfig, create_app  # noqa: E402

__all__ = ["WAIT_MS", "api", "browser", "expect", "finish", "login", "open_page", "page", "serve", "settings_file", "ui"]

WAIT_MS = 60_000  # how long an action may take before the test fails (not a performance threshold)


def serve(config: UiConfig):
    """Start a UI server for ``config`` on a free loopback port; returns (server, thread, base URL)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """One UI server for the module: copies of the test apps and the Mandelbrot example, its own share."""
    root = tmp_path_factory.mktemp("ui")
    apps = root / "apps"
    shutil.copytree(TEST_APPS, apps, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    shutil.copytree(ROOT / "apps" / "mandelbrot_project", apps / "mandelbrot_project",
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "*.so", "*.c"))
    config = UiConfig(apps_path=(apps,), app="toy", share=root / "share", steps_file=root / "lab_steps.toml", port=0,
                      state=root / "xdg-state" / "agi_core" / "ui")
    server, thread, base = serve(config)
    (root / "screenshots").mkdir()
    state = {"config": config, "base": base, "root": root, "apps": apps, "timings": {}, "server": server}
    yield state
    state["server"].should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(ui):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def login(browser, ui) -> Page:
    """A new tab (own context) that opened the printed URL once (the token is now its cookie)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(ui["config"].url(int(ui["base"].rsplit(":", 1)[1])))
    expect(page.locator(".topbar")).to_be_visible()
    return page


@pytest.fixture(scope="module")
def page(browser, ui) -> Page:
    page = login(browser, ui)
    yield page
    (ui["root"] / "timings.json").write_text(json.dumps(ui["timings"], indent=1))
    page.context.close()


def api(page: Page, ui, method: str, path: str, body=None):
    """A JSON API call with the Bearer token (test setup, as a script would do it)."""
    headers = {"Authorization": f"Bearer {ui['config'].token}"}
    response = page.request.fetch(ui["base"] + path, method=method, headers=headers, data=body)
    assert response.ok, response.text()
    return response.json()


def open_page(page: Page, ui, path: str, name: str) -> None:
    page.goto(ui["base"] + path)
    page.wait_for_load_state("networkidle")
    ui["timings"][f"load {path}"] = round(page.evaluate("performance.getEntriesByType('navigation')[0].duration"), 1)
    page.screenshot(path=str(ui["root"] / "screenshots" / f"{name}.png"), full_page=True)


def settings_file(ui, app: str = "toy") -> Path:
    return ui["apps"] / f"{app}_project" / "app_settings.toml"


def finish(page: Page, panel: str) -> None:
    """Wait for the job shown in ``panel`` to end."""
    expect(page.locator(f"{panel} .job[data-status]")).to_have_count(1, timeout=WAIT_MS)
