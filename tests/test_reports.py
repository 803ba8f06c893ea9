"""`agi runs report`: the Gantt chart, the load chart, the DAG picture and the PDF of real runs of
the toy app, and of a recorded run too big and too broken to have run here."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from agi_core.base.errors import AgiError
from agi_core.provenance import AppRecord, PartitionRecord, RunRecord, WorkerRecord, read_record
from tests.conftest import TEST_APPS, run_agi

PNG = b"\x89PNG\r\n\x1a\n"


def run_app(share: Path, *sets: str) -> str:
    """Run the toy app on ``share`` with ``--set`` assignments (it may fail); the run id."""
    options = [item for assignment in sets for item in ("--set", assignment)]
    out = run_agi("run", "toy", "--apps-path", str(TEST_APPS), "--set", f'cluster.workers_data_path="{share}"', *options, "--json")
    return json.loads(out.stdout)["run_id"]


def pdf_pages(path: Path) -> int:
    try:
        from pypdf import PdfReader
    except ImportError:
        return len(re.findall(rb"/Type\s*/Page(?![s\w])", path.read_bytes()))
    return len(PdfReader(path).pages)


def report(share: Path, run: str) -> list[Path]:
    out = run_agi("runs", "report", run, "--share", str(share))
    assert out.returncode == 0, out.stderr
    return [Path(line) for line in out.stdout.splitlines() if line.strip()]


def check_pictures(paths: list[Path]) -> None:
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG) and len(data) > 1000, path
        else:
            assert data.startswith(b"%PDF"), path


def test_report_of_a_failed_dag_run_has_every_picture_and_five_pages(share):
    run_id = run_app(share, "n=6", "chain=true", "fail_on=[3]", "write_files=true")
    run_dir = share / "runs" / "toy" / run_id
    assert read_record(run_dir / "manifest.json").status == "failed"
    paths = report(share, run_id)
    assert [p.name for p in paths] == ["gantt.png", "load.png", "dag.png", "cache.png", "report.pdf"]
    assert all(p.parent == run_dir for p in paths)
    check_pictures(paths)
    assert pdf_pages(run_dir / "report.pdf") == 5  # summary, Gantt, load, DAG, cache
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]


def test_report_of_a_run_without_deps_has_no_dag_and_counts_cache_hits(share):
    first = run_app(share, "n=5")
    second = run_app(share, "n=5")  # every partition a cache hit
    paths = report(share, first)
    assert [p.name for p in paths] == ["gantt.png", "load.png", "cache.png", "report.pdf"]  # it stored entries: a cache page
    check_pictures(paths)
    assert pdf_pages(paths[-1]) == 4
    hits = report(share, second)
    check_pictures(hits)
    assert pdf_pages(hits[-1]) == 4

    from agi_core.reports.render import _Timeline, summary_lines

    record = read_record(share / "runs" / "toy" / second / "manifest.json")
    line = _Timeline(record)
    assert line.hits == 5 and line.computed == 0
    text = "\n".join(summary_lines(record, line))
    assert "cache hits 5" in text and second in text


def big_record(n: int) -> RunRecord:
    """An abandoned run of ``n`` partitions on 8 workers: some cache hits, failures, retries, and a
    few that started and never ended."""
    t0 = 1.7e9
    parts = []
    for i in range(n):
        hit, failed, open_ = i % 10 == 0, i % 97 == 0, i >= n - 5
        start = 0.0 if hit else t0 + (i // 8) * 0.01
        parts.append(PartitionRecord(
            id=f"p{i}", slot=f"s{i % 8}", worker=f"h:{i % 8}", host="h", start=start,
            end=0.0 if hit or open_ else start + 0.008, retries=1 if i % 1000 == 1 else 0,
            status="cached" if hit else "not run" if open_ else "failed" if failed else "ok", cache="hit" if hit else None,
            error="Traceback (most recent call last):\n  File x\nValueError: boom" if failed and not hit else None))
    workers = {f"h:{w}": WorkerRecord(host="h", slot=f"s{w}", versions={"python": "3.11"}) for w in range(8)}
    return RunRecord(run_id="20261123-000000-abcdef", status="abandoned", app=AppRecord(name="big"), partitions=parts,
                     workers=workers, started="2026-11-23T00:00:00.000+00:00")


def test_report_copes_with_100000_partitions_of_an_abandoned_run_without_a_plan(tmp_path):
    from agi_core.reports import write_report
    from agi_core.reports.render import _gantt, _Timeline, summary_lines

    record = big_record(100_000)
    (tmp_path / "manifest.json").write_text(record.dump_json())
    record = read_record(tmp_path / "manifest.json")
    line = _Timeline(record)
    assert (line.hits, line.unfinished, line.retried) == (10_000, 5, 100)
    assert line.failed == sum(1 for i in range(100_000 - 5) if i % 97 == 0 and i % 10 != 0)
    figure = _gantt(record, line)
    assert len(figure.axes[0].collections) <= 8 * 4  # a few collections per worker, not one artist per partition
    text = "\n".join(summary_lines(record, line))
    assert "failures (" in text and "ValueError: boom" in text and "more (agi runs show" in text
    paths = write_report(record)
    assert [p.name for p in paths] == ["gantt.png", "load.png", "report.pdf"]  # no plan.json: no DAG
    check_pictures(paths)
    assert pdf_pages(paths[-1]) == 3


def test_a_report_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    from agi_core.reports import write_report

    for name in ("matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.backends.backend_pdf"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(AgiError) as caught:
        write_report(big_record(3), tmp_path)
    assert caught.value.fix == "pip install matplotlib"
    assert list(tmp_path.iterdir()) == []
