"""``agi``: apps, settings, work plans, runs and their records, from a terminal.

Every command takes ``--help``. Errors print what failed and the fix, and exit non-zero; add
``-v`` for the traceback. The commands live in one module per group (``*_cmds.py``); this one
holds the group, its error handling and the entry point.
"""

from __future__ import annotations

import errno
import gc
import re
import traceback
from typing import Any

import click

from ..base.errors import AgiError, Terminated
from ..base.share_io import is_file_error, share_error
from .options import apps_path_option
from .output import console, print_error

__all__ = ["cli", "main", "verbose_first"]


#: command name -> "module:attribute" under agi_core.cli; a command's module is imported only when
#: that command runs (or `--help` lists it), so `agi run` does not load every other command
_COMMANDS = {
    "apps": "apps_cmds:apps_command", "settings": "apps_cmds:settings_command", "distrib": "run_cmds:distrib_command",
    "run": "run_cmds:run_command", "install": "hosts_cmds:install_command", "doctor": "hosts_cmds:doctor_command",
    "hosts": "hosts_cmds:hosts_group", "cluster": "cluster_cmds:cluster_group", "runs": "runs_cmds:runs_group",
    "cache": "cache_cmds:cache_group", "snippet": "snippet_cmds:snippet_command", "steps": "steps_cmds:steps_group",
    "ui": "ui_cmd:ui_command", "keys": "keys_cmds:keys_group",
}


_VERBOSE = re.compile(r"-v+|--verbose")


def verbose_first(args: list[str]) -> list[str]:
    """``-v`` anywhere on the command line (``agi run APP -v``) moved before the subcommand, where
    the group reads it; what follows ``--`` is left alone.

    >>> verbose_first(["run", "toy", "-vv", "--set", "n=2", "--", "-v"])
    ['-vv', 'run', 'toy', '--set', 'n=2', '--', '-v']
    """
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if _VERBOSE.fullmatch(a)]
    return [*flags, *(a for a in args[:end] if not _VERBOSE.fullmatch(a)), *args[end:]]


class _Group(click.Group):
    """Turns `AgiError` (and a stray `OSError`) into a message with its fix and exit code 1; Ctrl-C
    into exit code 130, SIGTERM during a run into 143.
    Loads each command's module on first use (see `_COMMANDS`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, verbose_first(args))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        import importlib

        module, _, attribute = _COMMANDS[name].partition(":")
        command: click.Command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
        if isinstance(ctx.obj, dict) and (loading := ctx.obj.get("loading")) is not None:
            loading.resume()  # the command's modules are loaded: it runs with the collector on (loading_gc)
        return command

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
        except Terminated as exc:
            console(stderr=True).print(f"[yellow]{exc.message}[/]")
            ctx.exit(143)
        except OSError as exc:  # a file the command could not read or write, said as a share error
            if exc.errno == errno.EPIPE:  # output piped to `head`: click ends quietly
                raise
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            if is_file_error(exc):
                error = share_error(exc, "at")
                print_error(error.message, error.fix)
            else:  # a network or system failure (a connection timed out): not the share's fault
                print_error(f"{type(exc).__name__}: {exc}", "check the host and port it names (reachable, listening); "
                            "`agi -v …` shows where it happened")
            ctx.exit(1)


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
      agi cache list                what the result cache holds
    \b
    Many machines: set [cluster] scheduler and [cluster.workers] in the app's settings, then
      agi hosts trust HOST; agi install APP; agi doctor APP; agi cluster up APP; agi run APP --mode dp
    """
    ctx.ensure_object(dict)["verbose"] = verbose


def main() -> None:
    """Entry point of the ``agi`` console script."""
    import warnings

    # asyncssh still names DSA key classes at import; cryptography's deprecation notice about it
    # is noise for a user who never uses DSA keys (they are refused by OpenSSH anyway)
    warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
    from .loading_gc import LoadingCollections

    try:
        cli(prog_name="agi", obj={"loading": LoadingCollections()})
    finally:
        # The process ends here: keep the interpreter's last garbage collection from walking
        # every object a big run left (0.13 s after a run of 100,000 partitions). Nothing is lost:
        # files are closed, and what a collection would free, the exit frees.
        gc.freeze()
