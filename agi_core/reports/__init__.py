"""Reports of a run: pictures and a PDF made from its record and plan (`agi runs report RUN`).

See `render.write_report` and docs/reports.md.
"""

from .render import REPORT_FILES, write_report

__all__ = ["REPORT_FILES", "write_report"]
