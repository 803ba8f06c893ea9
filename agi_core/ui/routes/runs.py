"""The RUNS page: the recorded runs, filterable; one record with its report figures; bundle export."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...provenance import RunRecord, RunStore
from ..actions import IMAGE_SUFFIXES
from ..files import run_store, safe_name
from ..records import SORTS, RecordCache, partition_page
from ..rendering import render
from .live import record_view

__all__ = ["router"]

router = APIRouter()


def filtered(store: RunStore, app: str = "", status: str = "", text: str = "", cache: RecordCache | None = None) -> list:
    records = (cache.list(store, safe_name(app) if app else None) if cache is not None
               else store.list(safe_name(app) if app else None))
    return [r for r in records if (not status or r.status == status) and (not text or text in r.run_id or text in r.app.name
                                                                           or (r.step and text in r.step.step))]


@router.get("/runs")
def runs_page(request: Request, app: str = "", status: str = "", q: str = "") -> Response:
    store = run_store(request.app.state.config)
    records = filtered(store, app, status, q, _cache(request))
    template = "_runs_table.html" if request.headers.get("hx-request") and request.headers.get("hx-target") == "runs-table" \
        else "runs.html"
    apps = sorted({p.parent.parent.name for p in store.manifests()})
    return render(request, template, page="runs", records=records[:500], total=len(records), apps=apps, app=app, status=status,
                  q=q, share=store.share)


def _cache(request: Request) -> RecordCache:
    return request.app.state.records


def _record(request: Request, app: str, run_id: str):
    return _cache(request).find(run_store(request.app.state.config), safe_name(app), safe_name(run_id))


@router.get("/runs/{app}/{run_id}/partitions")
def partitions(request: Request, app: str, run_id: str, status: str = "", q: str = "", sort: str = "plan", desc: str = "",
               start: int = 0) -> Response:
    """One page of the record's partitions: filtered by status, found by id, sorted."""
    record = _record(request, app, run_id)
    page = partition_page(record, status, q.strip(), sort, desc == "1", start)
    return render(request, "_partition_rows.html", record=record, parts=page)


@router.get("/runs/{app}/{run_id}")
def run_page(request: Request, app: str, run_id: str, message: str = "") -> Response:
    store = run_store(request.app.state.config)
    record = _record(request, app, run_id)
    run_dir = Path(record.path).parent if record.path else store.run_dir(app, run_id)
    figures = report_figures(record, run_dir)
    images = sorted(str(p.relative_to(run_dir)) for p in (run_dir / "out").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
        if (run_dir / "out").is_dir() else []
    failed = [p for p in record.partitions if p.status == "failed"]
    live = None
    if record.status == "running":  # reattach: the job that runs it on this server, else its log
        job = request.app.state.jobs.of_run(record.run_id)
        live = {"job": job} if job is not None and not job.done else record_view(request, record.app.name, record.run_id)
    return render(request, "run.html", page="runs", record=record, figures=figures, images=images, failed=failed[:20],
                  failed_total=len(failed), message=message, live=live, sorts=SORTS, parts=partition_page(record),
                  status="", q="", sort="plan", desc="", bundles=sorted(p.name for p in run_dir.parent.glob(f"{run_id}*.tar.gz")))


def report_figures(record: RunRecord, run_dir: Path) -> list[str]:
    """The report's pictures written so far, of the pages that apply to ``record`` (in page order)."""
    from ...reports import figure_files

    return figure_files(record, run_dir, written=True)


@router.post("/runs/{app}/{run_id}/report")
def report(request: Request, app: str, run_id: str) -> Response:
    from ...reports import write_report

    store = run_store(request.app.state.config)
    record = store.find(str(store.run_dir(safe_name(app), safe_name(run_id))))
    written = write_report(record)
    return run_page(request, app, run_id, message=f"report written: {', '.join(p.name for p in written)}")


@router.post("/runs/{app}/{run_id}/export")
def export(request: Request, app: str, run_id: str) -> Response:
    from ...provenance.bundle import export_run

    store = run_store(request.app.state.config)
    record = store.find(str(store.run_dir(safe_name(app), safe_name(run_id))))
    out = store.root / safe_name(app) / f"{run_id}.tar.gz"
    result = export_run(record, out)
    return render(request, "_notice.html", text=f"bundle written: {out.name} ({result.files} files, {result.size} bytes)",
                  link=(f"/files/{app}/{run_id}.tar.gz", "download"))
