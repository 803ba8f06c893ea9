"""``agi snippet``: the Python of an `AGI.install / get_distrib / run` call, settings filled in."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import MODE_HELP, apps_path_option, env_for, overrides, set_option
from .output import console

__all__ = ["snippet_command"]


@click.command("snippet")
@click.argument("app")
@click.argument("kind", type=click.Choice(["install", "distrib", "run"]))
@apps_path_option
@click.option("--mode", "-m", default=None, help=MODE_HELP)
@set_option()
@click.option("--no-cache", "no_cache", is_flag=True, help="run: the snippet neither reuses nor stores cached results (use_cache=False).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the snippet to this file instead of printing it.")
@click.pass_context
def snippet_command(ctx: click.Context, app: str, kind: str, mode: str | None, assignments: tuple[str, ...],
                    no_cache: bool, out: Path | None) -> None:
    """Print the Python of APP's `AGI.install` (install), `AGI.get_distrib` (distrib) or `AGI.run`
    (run) call, with the current settings filled in.

    The values are resolved exactly as `agi install|distrib|run` would resolve them with the same
    --mode and --set (profile < settings file < --set), and written out in full: the app's folder,
    scheduler, worker map, mode, args and share. The snippet runs unchanged with `python FILE` from
    any directory and prints a short result (run: status, run id, value, record; distrib: the
    plan's fingerprint and partition count; install: each host's outcome); it exits non-zero on
    failure.

    Its header names the snippet API (agi.snippet.v1), the app, the kind, the settings file and
    hash, and when it was generated. When the settings change afterwards, running it warns (and
    names the command that regenerates it); with AGI_STRICT_SNIPPETS=1 it stops with an error
    before anything runs.

    \b
    Examples:
      agi snippet mandelbrot run --mode p > render.py && python render.py
      agi snippet heat distrib --set "sizes=[32]" -o plan_heat.py
    """
    from ..run import resolve
    from ..snippets import render_snippet

    if no_cache and kind != "run":
        raise click.UsageError("--no-cache applies to run snippets only")
    args, cluster = overrides(assignments)
    env = env_for(ctx, app)
    request = resolve(env, mode=mode, args=args, cluster=cluster or None, use_cache=not no_cache)
    text = render_snippet(kind, request, env, assignments=assignments, mode=mode)
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text)
    console(stderr=True).print(f"wrote {out}  (run it: python {out.absolute()})")
