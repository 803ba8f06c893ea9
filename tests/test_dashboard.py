"""The Dask dashboard ships with the first install and says where it is: on `agi cluster up`,
`agi cluster status` and at the start of a cluster run; a run's own cluster takes a free port, so
runs at the same time never fight over 8787."""

from __future__ import annotations

import re
import socket
import tomllib
import urllib.request

import pytest

from tests.conftest import ROOT, TEST_APPS, run_agi


def _extras(name: str, table: dict[str, list[str]]) -> set[str]:
    """The requirements of extra ``name``, its own extras (``agi-orchestrator[a,b]``) followed."""
    found: set[str] = set()
    for requirement in table[name]:
        own = re.fullmatch(r"agi-orchestrator\[(.+)\]", requirement)
        found |= set().union(*(_extras(n, table) for n in own.group(1).split(","))) if own else {requirement}
    return found


def test_the_first_command_installs_bokeh_and_the_test_extra_too():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", r)[0] for r in _extras("quickstart", extras)}
    assert {"bokeh", "numpy", "pillow", "matplotlib", "fastapi"} <= names
    assert {"pytest", "playwright", "numba", "pyarrow"}.isdisjoint(names)  # the test tools and the GPU/dataframe examples: not first
    assert _extras("quickstart", extras) <= _extras("test", extras)
    assert 'EXTRAS="${AGI_EXTRAS:-quickstart}"' in (ROOT / "scripts" / "_venv.sh").read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def port_8787_held():
    """8787 in use, as when another run or a warm cluster serves its dashboard there."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    except OSError:
        pass  # held already, by another process on this machine
    yield
    holder.close()


def test_a_run_prints_its_own_clusters_dashboard_on_a_free_port(share, port_8787_held):
    pytest.importorskip("bokeh", reason="the dashboard needs bokeh: the quickstart extra")
    done = run_agi("--apps-path", str(TEST_APPS), "run", "toy", "--mode", "d", "--progress", "--set", "n=2",
                   "--set", f'cluster.workers_data_path="{share}"', "--set", 'cluster.workers={"127.0.0.1"=1}')
    assert done.returncode == 0, done.stderr
    url = re.search(r"dashboard (http://127\.0\.0\.1:(\d+)/status)", done.stderr)
    assert url and url.group(2) != "8787", done.stderr
    assert "already in use" not in done.stderr + done.stdout and "8787" not in done.stderr


def test_cluster_up_and_status_print_the_served_dashboard(tmp_path):
    pytest.importorskip("bokeh", reason="the dashboard needs bokeh: the quickstart extra")
    port = _free_port()
    options = ["--apps-path", str(TEST_APPS), "--set", f"cluster.dask.dashboard_port={port}", "--set", "cluster.dask.scheduler_port=0",
               "--set", 'cluster.workers={"127.0.0.1"=1}']
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    url = f"http://127.0.0.1:{port}/status"
    try:
        up = run_agi("cluster", "up", "toy", *options, env=state)
        assert up.returncode == 0, up.stderr
        assert f"dashboard {url}" in up.stdout
        status = run_agi("cluster", "status", "toy", *options, env=state)
        assert status.returncode == 0 and f"dashboard {url}" in status.stdout
        with urllib.request.urlopen(url, timeout=30) as page:  # served, by the warm cluster's scheduler
            assert page.status == 200 and b"bokeh" in page.read().lower()
    finally:
        run_agi("cluster", "down", "toy", *options, env=state)
