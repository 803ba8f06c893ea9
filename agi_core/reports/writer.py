"""The one report writer: each page that applies is drawn, its PNG written, and all of them put
into ``report.pdf``; every file is written atomically (`agi_core.base.atomic`), so a reader (the web
UI, a bundle export) never sees half a picture."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.atomic import write_bytes_atomic
from .drawing import image_page, matplotlib_classes
from .page import Page, Subject

__all__ = ["PDF_FILE", "write_pages"]

PDF_FILE = "report.pdf"


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_pages(subject: Subject, pages: Sequence[Page]) -> list[Path]:
    """Draw the ``pages`` that apply to ``subject`` into its folder: one PNG per page that has a
    file, then ``report.pdf`` with every page in list order. Returns the paths written, the PDF
    last. Nothing is written when matplotlib is missing (the error says how to install it)."""
    PdfPages = matplotlib_classes()[2]
    run_dir = Path(subject.run_dir)
    written: list[Path] = []
    in_pdf: list[Any] = []
    for page in [page for page in pages if page.applies(subject)]:
        figure = page.draw(subject)
        if page.file:
            path = run_dir / page.file
            write_bytes_atomic(path, _png(figure))
            written.append(path)
            caption = page.pdf_caption(subject)
            if caption is not None:
                figure = image_page(path, caption)
        in_pdf.append(figure)
    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": subject.title, "Creator": "agi_core"}) as pdf:
        for figure in in_pdf:
            pdf.savefig(figure)
    write_bytes_atomic(run_dir / PDF_FILE, buffer.getvalue())
    written.append(run_dir / PDF_FILE)
    return written
