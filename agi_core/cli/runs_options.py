"""What the ``agi runs`` commands share: ``--share`` (`RUNS_SHARE_OPTION`) and the run store it, or
APP's settings, names (`run_store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .options import env_for

if TYPE_CHECKING:
    from ..provenance import RunStore

__all__ = ["RUNS_SHARE_OPTION", "run_store"]


RUNS_SHARE_OPTION = click.option("--share", type=click.Path(file_okay=False, path_type=Path),
                                 help="The share to read (default: the app's workers_data_path, else the local default share).")


def run_store(ctx: click.Context, app: str | None, share: Path | None) -> RunStore:
    """The run records of ``--share``, else of APP's share, else of the local default share."""
    from ..base.paths import default_share
    from ..provenance import RunStore
    from .cache_options import access_for

    access = access_for(ctx, app)  # which folders may be read: APP's [cluster.share] group_access
    if share:
        return RunStore(share, access)
    if app:
        return RunStore(env_for(ctx, app).settings().share, access)
    return RunStore(default_share(), access)
