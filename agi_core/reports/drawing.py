"""What the report pages draw alike: matplotlib's classes (imported only when drawing: `Figure`
objects on the Agg canvas, pyplot's global state never touched), a page of text, a page holding a
picture, and the small readers of record fields the pages share."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ..base.errors import AgiError

__all__ = ["WIDTH", "first_line", "image_page", "matplotlib_classes", "summary_page", "timestamp"]

WIDTH = 110  # characters per summary line


def matplotlib_classes() -> tuple[Any, Any, Any]:
    """``Figure``, ``FigureCanvasAgg`` and ``PdfPages``; a clear error when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.backends.backend_pdf import PdfPages
        from matplotlib.figure import Figure
    except ImportError:
        raise AgiError("run reports need matplotlib, which is not installed", fix="pip install matplotlib") from None
    return Figure, FigureCanvasAgg, PdfPages


def timestamp(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def first_line(error: str | None) -> str:
    """The line of an error that says what went wrong: a traceback's last line, else its first."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def image_page(path: Path, title: str) -> Any:
    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    from matplotlib.image import imread

    image = imread(str(path))
    step = max(1, max(image.shape[:2]) // 3000)  # keep a page's image at most ~3000 pixels a side
    figure = Figure(figsize=(11.69, 8.27), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.imshow(image[::step, ::step], interpolation="antialiased")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return figure


def summary_page(lines: list[str]) -> Any:
    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    figure = Figure(figsize=(8.27, 11.69), dpi=100)
    FigureCanvasAgg(figure)
    limit = 78
    shown = lines[:limit] + ([f"… {len(lines) - limit} more lines"] if len(lines) > limit else [])
    figure.text(0.05, 0.97, shown[0], fontsize=12, weight="bold", family="monospace", va="top")
    for k, text in enumerate(shown[1:], start=1):
        figure.text(0.05, 0.97 - k * 0.0118, text[:WIDTH + 12], fontsize=7, family="monospace", va="top")
    return figure

