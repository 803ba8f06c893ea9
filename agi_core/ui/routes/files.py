"""Files of the share's run folders (output images, report figures, bundles), traversal-checked."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ..files import inside, run_store, safe_name

__all__ = ["router"]

router = APIRouter()


@router.get("/files/{app}/{path:path}")
def run_file(request: Request, app: str, path: str) -> FileResponse:
    """A file below ``<share>/runs/<app>/`` (a run's folder, or a bundle beside it)."""
    root = run_store(request.app.state.config).root / safe_name(app)
    return FileResponse(inside(root, path), headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
