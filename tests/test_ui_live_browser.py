"""Live runs in a real browser (`tests.ui_fixtures`): cancelling a cluster run while it starts leaves
no process behind; Run cannot start twice; a running run is found again after a reload, from another
tab, after the UI server restarts, and when it was started from the command line."""

from __future__ import annotations

import os
import time

import psutil
import pytest

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
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=8", "args.sleep=0.2", "cluster.pool=false", "cluster.cluster_enabled=true",
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
    assert _left_behind(before) == []
    api(page, ui, "POST", "/api/settings/toy", {"set": ["args.n=6", "args.sleep=0.0", "cluster.cluster_enabled=false", "cluster.workers={}"]})
