"""Reports as pages: which pages apply to which record (with and without what each needs), the
cache page of real cached, partly cached and --no-cache runs of the toy app (`agi runs report`),
the web UI listing the pages that apply, and a page added to a list being all a new page takes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agi_core.provenance import AppRecord, PartitionRecord, RunRecord, read_record
from agi_core.reports.cache_facts import cache_facts
from agi_core.reports.cache_page import CachePage
from agi_core.reports.page import Page
from agi_core.reports.run_pages import RUN_PAGES, DagPage, GanttPage, LoadPage, RunSubject, SummaryPage
from tests.conftest import TEST_APPS, run_agi
from tests.test_reports import check_pictures, pdf_pages, report


def run_toy(share: Path, *options: str) -> RunRecord:
    share_set = f'cluster.workers_data_path="{share}"'
    out = run_agi("run", "toy", "--apps-path", str(TEST_APPS), "--set", share_set, *options, "--json")
    assert out.returncode == 0, out.stderr
    return read_record(Path(json.loads(out.stdout)["manifest"]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    """On one share: a first run (stores 5 entries), the same again (5 hits), a bigger one (5 hits,
    2 stored), a chained one (a DAG plan), and one with --no-cache."""
    share = tmp_path_factory.mktemp("pages") / "share"
    share.mkdir()
    return {"share": share, "first": run_toy(share, "--set", "n=5"), "again": run_toy(share, "--set", "n=5"),
            "grown": run_toy(share, "--set", "n=7"),
            "chain": run_toy(share, "--set", "n=4", "--set", "chain=true", "--no-cache"),
            "nocache": run_toy(share, "--set", "n=5", "--no-cache")}


def bare(**fields) -> RunSubject:
    """A recorded run with nothing but what ``fields`` give, in a folder with no plan.json."""
    return RunSubject(RunRecord(run_id="20261207-000000-abcdef", app=AppRecord(name="bare"), **fields), Path("/nonexistent"))


# -- applies() ---------------------------------------------------------------------------------


def test_summary_gantt_and_load_apply_to_any_run_even_an_empty_one():
    subject = bare()
    assert all(page.applies(subject) for page in (SummaryPage(), GanttPage(), LoadPage()))


def test_the_dag_page_applies_only_when_the_saved_plan_has_dependencies(runs):
    assert DagPage().applies(RunSubject.of(runs["chain"]))
    assert not DagPage().applies(RunSubject.of(runs["first"]))  # a plan without deps
    assert not DagPage().applies(bare())  # no plan.json at all


def test_the_cache_page_applies_only_to_runs_that_used_the_cache(runs):
    assert CachePage().applies(RunSubject.of(runs["first"]))  # stored entries
    assert CachePage().applies(RunSubject.of(runs["again"]))  # all hits
    assert not CachePage().applies(RunSubject.of(runs["nocache"]))
    # a cache folder, but no partition line says what the cache did (it failed before any ran)
    assert not CachePage().applies(bare(cache="/share/cache/bare", partitions=[PartitionRecord(id="p0")]))
    assert CachePage().applies(bare(cache="/share/cache/bare", partitions=[PartitionRecord(id="p0", cache="corrupt")]))


def test_pipeline_pages_apply_to_any_pipeline_record(tmp_path):
    from agi_core.pipeline.record import PipelineRecord
    from agi_core.reports.pipeline import PIPELINE_PAGES, PipelineSubject

    subject = PipelineSubject(PipelineRecord(pipeline_run="r1", file="lab_steps.toml"), tmp_path)
    assert [page.name for page in PIPELINE_PAGES if page.applies(subject)] == ["summary", "gantt", "dag"]


# -- the cache page's facts ---------------------------------------------------------------------


def test_a_cached_rerun_saves_the_recorded_time_of_the_first_computation(runs):
    facts = cache_facts(runs["again"], RunSubject.of(runs["again"]).run_dir)
    assert facts.counts["hit"] == 5 and facts.counts["stored"] == facts.counts["miss"] == 0
    first = {p.cache_key: p.duration_s for p in runs["first"].partitions}
    assert facts.saved_s == pytest.approx(sum(first.values()))
    assert facts.saved_how.startswith("recorded") and runs["first"].run_id in facts.saved_how
    assert facts.stored_bytes == 0


def test_the_bytes_stored_are_the_entries_results_as_the_cache_lists_them(runs):
    from agi_core.cache import CacheStore

    facts = cache_facts(runs["first"], RunSubject.of(runs["first"]).run_dir)
    assert facts.counts["stored"] == 5 and facts.counts["hit"] == 0 and facts.saved_s == 0.0
    mine = {p.cache_key for p in runs["first"].partitions}
    listed = [info.header["size"] for info in CacheStore.for_app(runs["share"], "toy").entries() if info.key in mine]
    assert len(listed) == 5 and facts.stored_bytes == sum(listed) > 0


def test_without_the_storing_run_the_time_saved_is_estimated_from_this_runs_computed_partitions(runs, tmp_path):
    grown = runs["grown"]
    alone = tmp_path / "runs" / "toy" / grown.run_id  # the run's folder, without the runs that stored its hits
    shutil.copytree(Path(str(grown.path)).parent, alone)
    facts = cache_facts(grown, alone)
    computed = [p.duration_s for p in grown.partitions if p.cache == "stored"]
    assert facts.counts["hit"] == 5 and len(computed) == 2
    assert facts.saved_s == pytest.approx(5 * sum(computed) / 2) and facts.saved_how.startswith("estimated")
    assert cache_facts(runs["again"], alone).saved_s is None  # nothing computed to estimate from: n/a


# -- agi runs report, the UI ----------------------------------------------------------------------


def test_runs_report_writes_the_cache_page_for_a_cached_rerun_and_not_for_no_cache(runs):
    share = runs["share"]
    paths = report(share, runs["again"].run_id)
    assert [p.name for p in paths] == ["gantt.png", "load.png", "cache.png", "report.pdf"]
    check_pictures(paths)
    assert pdf_pages(paths[-1]) == 4  # summary, Gantt, load, cache
    paths = report(share, runs["nocache"].run_id)
    assert [p.name for p in paths] == ["gantt.png", "load.png", "report.pdf"]
    assert pdf_pages(paths[-1]) == 3


def test_the_ui_lists_the_report_pictures_of_the_pages_that_apply(runs):
    pytest.importorskip("fastapi", reason="the web UI needs the ui extra: pip install 'agi-orchestrator[ui]'")
    from fastapi.testclient import TestClient

    from agi_core.ui import UiConfig, create_app

    share = runs["share"]
    for name in ("again", "nocache"):
        report(share, runs[name].run_id)
    stray = Path(str(runs["nocache"].path)).parent / "cache.png"
    shutil.copy(Path(str(runs["again"].path)).parent / "cache.png", stray)  # a picture no page of this run draws
    config = UiConfig(apps_path=(TEST_APPS,), app="toy", share=share)
    client = TestClient(create_app(config), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {config.token}"})
    cached = client.get(f"/runs/toy/{runs['again'].run_id}").text
    assert 'alt="gantt.png"' in cached and 'alt="cache.png"' in cached
    assert cached.index('alt="load.png"') < cached.index('alt="cache.png"')  # in page order
    uncached = client.get(f"/runs/toy/{runs['nocache'].run_id}").text
    assert 'alt="gantt.png"' in uncached and 'alt="cache.png"' not in uncached


# -- a new page is one class and one line ------------------------------------------------------------


class _Count(Page):
    name, title, file = "count", "how many partitions", "count.png"

    def draw(self, subject):
        from agi_core.reports.drawing import summary_page

        return summary_page([f"{len(subject.record.partitions)} partitions"])


def test_a_page_added_to_the_list_is_written_and_in_the_pdf(runs, tmp_path):
    from agi_core.reports.writer import write_pages

    subject = RunSubject(runs["first"], tmp_path)
    paths = write_pages(subject, (*RUN_PAGES, _Count()))
    assert [p.name for p in paths] == ["gantt.png", "load.png", "cache.png", "count.png", "report.pdf"]
    check_pictures(paths)
    assert pdf_pages(paths[-1]) == 5
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
