"""Reports: pictures and a PDF made from a run's record and plan (`agi runs report RUN`), or from
a pipeline run's record (`agi steps report`).

See `render.write_report`, `pipeline.write_pipeline_report` and docs/reports.md.
"""

from .pipeline import PIPELINE_REPORT_FILES, write_pipeline_report
from .render import REPORT_FILES, write_report

__all__ = ["PIPELINE_REPORT_FILES", "REPORT_FILES", "write_pipeline_report", "write_report"]
