"""The web UI's server and JSON API through the ASGI test client: token, CSRF, traversal, settings,
plan, runs, steps (docs/ui.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web UI needs the ui extra: pip install 'agi-orchestrator[ui]'")
pytest.importorskip("httpx", reason="the ASGI test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from agi_core import AgiError  # noqa: E402
from agi_core.ui import UiConfig, create_app  # noqa: E402
from agi_core.ui.config import check_bind  # noqa: E402


@pytest.fixture
def config(apps_copy: Path, share: Path, tmp_path: Path) -> UiConfig:
    return UiConfig(apps_path=(apps_copy,), app="toy", share=share, steps_file=tmp_path / "lab_steps.toml", state=tmp_path / "state")


@pytest.fixture
def api(config: UiConfig) -> TestClient:
    """A client of the JSON API, authenticated with the Bearer token."""
    return TestClient(create_app(config), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {config.token}"})


@pytest.fixture
def browser(config: UiConfig) -> TestClient:
    """A client that behaves like the browser: it has visited the printed URL once (cookie)."""
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    assert client.get(f"/?token={config.token}").status_code == 200
    return client


def wait(client: TestClient, job: dict) -> dict:
    """The job's events as the SSE stream gives them, then its final state."""
    events = []
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ["):
                events += json.loads(line[6:])
    return client.get(f"/api/jobs/{job['id']}").json() | {"stream": events}


# -- the guard -------------------------------------------------------------------------------------


def test_requests_without_the_token_are_refused(config):
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    for path in ("/orchestrate", "/api/apps", "/static/htmx.min.js", "/files/toy/x"):
        assert client.get(path).status_code == 401
    assert client.get("/api/apps", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/apps", headers={"Authorization": f"Bearer {config.token}"}).json() == ["dice", "gpu_toy", "intdag", "ledger", "needsdep", "noop", "texts", "toy", "wordfreq"]


def test_the_token_in_the_url_becomes_an_httponly_strict_cookie(config):
    client = TestClient(create_app(config), base_url="http://127.0.0.1")
    first = client.get(f"/orchestrate?app=toy&token={config.token}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/orchestrate?app=toy"  # the token leaves the URL
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert client.get("/orchestrate?app=toy").status_code == 200


def test_posts_need_the_csrf_token_and_this_origin(browser, config):
    assert browser.post("/orchestrate/toy/settings", data={"args.n": "7"}).status_code == 403  # no CSRF header
    csrf = {"X-CSRF-Token": config.csrf}
    assert browser.post("/orchestrate/toy/settings", data={"args.n": "7"}, headers=csrf | {"Origin": "http://evil.example"}).status_code == 403
    assert browser.post("/orchestrate/toy/settings", data={"args.n": "7"}, headers=csrf | {"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert browser.post("/orchestrate/toy/settings", data={"args.n": "7", "workers_present": "1"}, headers=csrf).status_code == 200


def test_a_foreign_host_header_is_refused(config):
    # a DNS-rebinding page reaches 127.0.0.1 under its own name: the Host header gives it away
    client = TestClient(create_app(config), base_url="http://evil.example")
    assert client.get("/api/apps", headers={"Authorization": f"Bearer {config.token}"}).status_code == 421


def test_a_non_loopback_bind_must_be_allowed():
    check_bind(UiConfig(host="127.0.0.1"))
    check_bind(UiConfig(host="localhost"))
    with pytest.raises(AgiError, match="refusing") as info:
        check_bind(UiConfig(host="0.0.0.0"))
    assert "--allow-remote" in info.value.fix
    check_bind(UiConfig(host="0.0.0.0", allow_remote=True))


def test_share_files_are_checked_against_traversal(api, config):
    run = api.post("/api/run/toy").json()
    assert wait(api, run)["status"] == "ok"
    run_id = api.get("/api/runs").json()[0]["run_id"]
    assert api.get(f"/files/toy/{run_id}/manifest.json").json()["run_id"] == run_id
    (config.share / "secret.txt").write_text("S3CR3T-CONTENT")
    for path in (f"/files/toy/{run_id}/../../../secret.txt", f"/files/toy/{run_id}/%2e%2e/%2e%2e/%2e%2e/secret.txt",
                 "/files/..%2F..%2Fsecret.txt/x", "/files/toy/%2Fetc%2Fpasswd"):
        response = api.get(path)
        assert response.status_code == 404 and "S3CR3T-CONTENT" not in response.text, path


# -- settings --------------------------------------------------------------------------------------


def test_settings_list_each_value_with_its_source(api):
    fields = {f["key"]: f for f in api.get("/api/settings/toy").json()["fields"]}
    assert fields["args.n"] == fields["args.n"] | {"value": 6, "source": "app settings"}
    assert fields["args.sleep"]["source"] == "default" and fields["cluster.pool"]["source"] == "app settings"
    assert fields["cluster.cython"]["source"] == "default"


def test_saving_settings_keeps_comments_and_an_invalid_value_writes_nothing(api, apps_copy):
    file = apps_copy / "toy_project" / "app_settings.toml"
    saved = api.post("/api/settings/toy", json={"set": ["args.n=9", "cluster.pool=true"]}).json()
    assert saved["resolved"]["args"]["n"] == 9
    text = file.read_text()
    assert "n = 9" in text and "# toy test app" in text and "[lab]" in text
    bad = api.post("/api/settings/toy", json={"set": ["args.n=\"many\""]})
    assert bad.status_code == 400 and "args.n" in bad.json()["error"]
    assert file.read_text() == text


def test_the_settings_form_shows_an_invalid_value_inline_and_writes_nothing(browser, config, apps_copy):
    file = apps_copy / "toy_project" / "app_settings.toml"
    before = file.read_text()
    page = browser.post("/orchestrate/toy/settings", data={"args.n": "lots", "workers_present": "1"},
                        headers={"X-CSRF-Token": config.csrf}).text
    assert 'class="field-error"' in page and "<code>args.n</code>" in page and 'value="lots"' in page
    assert file.read_text() == before


# -- plan ------------------------------------------------------------------------------------------


def test_moving_a_partition_saves_a_plan_file_that_the_run_uses(api):
    plan = api.get("/api/plan/toy").json()
    assert plan["edited"] is False and set(plan["plan"]["assignment"])
    slots = [s["name"] for s in plan["plan"]["slots"]]
    target = slots[-1]
    moved = api.post("/api/plan/toy/move", json={"partitions": ["p0", "p1"], "slot": target}).json()
    assert {"p0", "p1"} <= set(moved["assignment"][target])
    assert api.get("/api/plan/toy").json()["edited"] is True
    job = wait(api, api.post("/api/run/toy").json())
    assert job["status"] == "ok" and job["result"]["plan_file"]
    record = api.get(f"/api/runs/toy/{job['result']['run_id']}").json()
    assert {p["id"]: p["slot"] for p in record["partitions"]}["p0"] == target


def test_an_invalid_move_is_refused_and_nothing_is_saved(api):
    response = api.post("/api/plan/toy/move", json={"partitions": ["p0"], "slot": "nowhere-0"})
    assert response.status_code == 400 and "nowhere-0" in response.json()["error"]
    assert api.get("/api/plan/toy").json()["edited"] is False


def test_a_plan_of_10000_partitions_renders_folded_and_paged(api, browser, config):
    api.post("/api/settings/toy", json={"set": ["args.n=10000", 'cluster.workers={"127.0.0.1" = 4}']})
    page = browser.get("/orchestrate/toy/plan").text
    assert "10000 partitions" in page and page.count('class="part"') == 0  # slots folded: no partition rows yet
    rows = browser.get("/orchestrate/toy/plan/slot", params={"slot": "127.0.0.1-0"}).text
    assert rows.count('class="part"') == 200 and "more…" in rows


def test_a_stale_plan_is_a_warning(api):
    api.post("/api/plan/toy/move", json={"partitions": ["p0"], "slot": "127.0.0.1-0"})
    api.post("/api/settings/toy", json={"set": ["args.n=7"]})
    plan = api.get("/api/plan/toy").json()
    assert any("stale work plan" in w and "args.n" in w for w in plan["warnings"])


# -- runs and steps --------------------------------------------------------------------------------


def test_a_run_streams_its_events_and_is_listed(api):
    job = wait(api, api.post("/api/run/toy").json())
    kinds = [e["kind"] for e in job["stream"]]
    assert kinds[-1] == "run_finished" and kinds.count("partition_done") == 6 and "run_started" in kinds
    runs = api.get("/api/runs", params={"app": "toy"}).json()
    assert runs[0]["run_id"] == job["result"]["run_id"] and runs[0]["status"] == "ok"
    assert api.get("/api/runs", params={"status": "failed"}).json() == []


def test_install_streams_each_hosts_steps_until_it_is_done(api):
    job = wait(api, api.post("/api/install/toy").json())
    assert job["status"] == "ok", job
    steps = [e for e in job["stream"] if e["kind"] == "host_step"]
    assert {"connect", "probe"} <= {e["step"] for e in steps}
    last = steps[-1]
    assert last["done"] and not last["failed"] and last["step"] in ("installed", "updated", "unchanged")


def test_install_streams_what_uv_prints_into_its_hosts_log(api, apps_copy):
    """A changed app is installed again: uv's lines come as `host_output` events of that host and
    step, as they are printed (before the host's last step), not one line per step."""
    module = next((apps_copy / "toy_project" / "src" / "toy").glob("*.py"))
    module.write_text(module.read_text() + f"\n# changed {time.time_ns()}\n")  # a new app hash: re-installed
    job = wait(api, api.post("/api/install/toy").json())
    assert job["status"] == "ok", job
    kinds = [e["kind"] for e in job["stream"]]
    lines = [e for e in job["stream"] if e["kind"] == "host_output"]
    assert {e["host"] for e in lines} == {"127.0.0.1"} and {e["step"] for e in lines} >= {"install"}
    assert any(e["line"].startswith(("Installed", "Resolved")) for e in lines), lines
    assert kinds.index("host_output") < len(kinds) - 1 - kinds[::-1].index("host_step")  # streamed before the host ended


def test_a_failed_partition_comes_with_its_error(api):
    api.post("/api/settings/toy", json={"set": ["args.fail_on=[2]"]})
    job = wait(api, api.post("/api/run/toy").json())
    assert job["status"] == "failed" and job["result"]["run_id"]
    failed = [e for e in job["stream"] if e["kind"] == "partition_done" and e["status"] == "failed"]
    assert failed[0]["id"] == "p2" and "toy failure in partition 2" in failed[0]["error"]


def test_steps_are_added_reordered_and_run(api, config):
    assert api.post("/api/steps", json={"app": "toy", "kind": "run", "id": "first", "deps": []}).json() == {"id": "first"}
    assert api.post("/api/steps", json={"app": "toy", "kind": "distrib", "id": "second", "deps": []}).json() == {"id": "second"}
    assert "first" in config.steps_file.read_text()
    assert api.post("/api/steps/second", json={"move": -1}).json()["steps"] == ["second", "first"]
    assert api.post("/api/steps/first", json={"deps": ["second"]}).status_code == 200
    assert api.post("/api/steps/second", json={"deps": ["first"]}).status_code == 400  # a cycle: refused
    job = wait(api, api.post("/api/steps-run", json={}).json())
    assert job["status"] == "ok", job
    finished = [e for e in job["stream"] if e["kind"] == "step_finished"]
    assert [e["step"] for e in finished] == ["second", "first"] and all(e["status"] == "ok" for e in finished)
    rows = {r["id"]: r for r in api.get("/api/steps").json()}
    assert rows["first"]["status"] == "ok" and rows["first"]["run_ids"] and rows["first"]["deps"] == ["second"]


def test_pages_render(browser):
    for path in ("/orchestrate", "/orchestrate?app=toy", "/pipeline", "/runs", "/orchestrate/toy/snippet?kind=install"):
        started = time.perf_counter()
        response = browser.get(path)
        assert response.status_code == 200 and "alert error" not in response.text, path
        assert time.perf_counter() - started >= 0  # timings are measured in the browser tests' notes, not asserted


def test_a_settings_file_that_does_not_validate_is_shown_as_an_error(browser, apps_copy):
    (apps_copy / "toy_project" / "app_settings.toml").write_text("[args]\nn = 'six'\n")
    page = browser.get("/orchestrate?app=toy").text
    assert 'class="alert error"' in page and "args.n" in page and 'class="topbar"' in page


@pytest.mark.parametrize("mode", ["0", "p"])
def test_a_running_run_is_cancelled_like_ctrl_c(api, mode):
    """POST /api/jobs/ID/cancel stops a run mid-way: the job ends ``cancelled``, its record says
    ``interrupted`` and keeps the partitions that finished; an ended job cannot be cancelled."""
    import time

    api.post("/api/settings/toy", json={"set": ["args.n=40", "args.sleep=0.2"]})
    job = api.post("/api/run/toy", json={"mode": mode}).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and api.get(f"/api/jobs/{job['id']}").json()["events"] < 6:  # started, a partition done
        time.sleep(0.05)
    assert api.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    ended = wait(api, job)
    assert ended["status"] == "cancelled" and ended["error"].startswith("cancelled from the UI"), ended
    record = api.get(f"/api/runs/toy/{ended['result']['run_id']}").json()
    assert record["status"] == "interrupted"
    assert 0 < len([p for p in record["partitions"] if p["status"] == "ok"]) < 40
    refused = api.post(f"/api/jobs/{job['id']}/cancel")
    assert refused.status_code == 400 and "has ended already" in refused.json()["error"]


def test_a_ui_run_runs_in_its_own_process_and_a_killed_one_is_said_so(api, config):
    """A run from the UI is a detached process (its own session, so `agi ui` stopping does not stop
    it); one killed before it could say how it went fails with that, and names its output log."""
    import os
    import signal

    import psutil

    api.post("/api/settings/toy", json={"set": ["args.n=40", "args.sleep=0.2"]})
    job = api.post("/api/run/toy").json()
    while api.get(f"/api/jobs/{job['id']}").json()["events"] < 3:
        time.sleep(0.05)
    folder = config.state_dir() / "runs" / job["id"]
    pid = json.loads((folder / "process.json").read_text())["pid"]
    assert pid != os.getpid() and os.getsid(pid) == pid != os.getsid(0)  # a session of its own
    assert "agi_core.ui.run_process" in " ".join(psutil.Process(pid).cmdline())
    os.kill(pid, signal.SIGKILL)
    ended = wait(api, job)
    assert ended["status"] == "failed" and ended["error"] == "the run's process ended (exit status -9) without saying how the run went"
    assert ended["fix"] == f"its output is in {folder / 'output.log'}"
