"""``agi``: apps, settings, work plans, runs and their records, from a terminal.

Every command takes ``--help``. Errors print what failed and the fix, and exit non-zero; add
``-v`` for the traceback. The commands live in one module per group (``*_cmds.py``); this one
holds the group, its error handling and the entry point.
"""

from __future__ import annotations

import traceback
from typing import Any

import click

from ..errors import AgiError
from .apps_cmds import apps_command, settings_command
from .cluster_cmds import cluster_group
from .hosts_cmds import doctor_command, hosts_group, install_command
from .options import apps_path_option
from .output import console, print_error
from .run_cmds import distrib_command, run_command
from .runs_cmds import runs_group

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns `AgiError` into a message with its fix and exit code 1; Ctrl-C into exit code 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgiError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            print_error(exc.message, exc.fix)
            ctx.exit(1)
        except KeyboardInterrupt:
            console(stderr=True).print("[yellow]interrupted[/]")
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@apps_path_option
@click.option("-v", "--verbose", count=True, help="Show tracebacks and more detail.")
@click.version_option(package_name="agi-orchestrator", prog_name="agi")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Run Python apps split in partitions, on this machine or a Dask cluster.

    \b
    Quick start:
      agi apps                      list the apps
      agi run mandelbrot            render the example (mode 0: this process)
      agi run mandelbrot --mode p   the same on a process pool
      agi run mandelbrot --mode dc  on a Dask cluster of this machine, Cython kernels
      agi runs show last            the record of the last run
    \b
    Many machines: set [cluster] scheduler and [cluster.workers] in the app's settings, then
      agi hosts trust HOST; agi install APP; agi doctor APP; agi cluster up APP; agi run APP --mode dp
    """
    ctx.ensure_object(dict)["verbose"] = verbose


for _command in (apps_command, settings_command, distrib_command, run_command, install_command, doctor_command,
                 hosts_group, cluster_group, runs_group):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``agi`` console script."""
    cli(prog_name="agi")
