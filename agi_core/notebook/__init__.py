"""agi_core in a Jupyter notebook: a progress display for ``await AGI.run(...)`` in a cell.

>>> from agi_core.notebook import progress
>>> sink = progress(display=lambda *a, **k: None)  # as `on_event=` of AGI.run

See docs/notebooks.md. Like `cli/` and `ui/`, this package only renders the run's events; workers
never import it.
"""

from __future__ import annotations

from .progress import NotebookProgress, progress

__all__ = ["NotebookProgress", "progress"]
