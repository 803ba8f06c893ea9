"""``agi distrib`` and ``agi run``: a run's work plan, and the run itself with its live view."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from ..agi import AGI  # loaded with the command, while the collector is paused (loading_gc)
from .options import MODE_HELP, apps_path_option, apps_paths, env_for, no_app, overrides, set_option
from .output import console, lines_console, print_json
from .plan_view import plan_tree

__all__ = ["distrib_command", "print_run", "run_command"]


@click.command("distrib")
@click.argument("app")
@apps_path_option
@click.option("--mode", "-m", default=None, help=MODE_HELP)
@set_option()
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the plan to this JSON file (to edit, then `agi run --plan`).")
@click.option("--graph", "-g", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the plan's dependency graph to this image (.png, .svg, .pdf): one colour per slot, "
                   "left to right by generation. Needs matplotlib.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead of a tree.")
@click.pass_context
def distrib_command(ctx: click.Context, app: str, mode: str | None, assignments: tuple[str, ...], out: Path | None,
                    graph: Path | None, as_json: bool) -> None:
    """Compute the balanced work plan of a run, without running it."""
    args, cluster = overrides(assignments)
    plan = asyncio.run(AGI.get_distrib(env_for(ctx, app), mode=mode, args=args, cluster=cluster or None))
    if out:
        plan.save(out)
    if graph:
        from ..plan.drawing import draw_plan

        draw_plan(plan, graph)
    if as_json:
        sys.stdout.write(plan.to_json())
    else:
        console().print(plan_tree(plan))
    if out and not as_json:
        console(stderr=True).print(f"wrote {out}  (edit the assignment, then: agi run {app} --plan {out})")
    if graph:
        console(stderr=True).print(f"wrote {graph}")


@click.command("run")
@click.argument("app", required=False)
@apps_path_option
@click.option("--mode", "-m", default=None, help=MODE_HELP)
@set_option()
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path), help="Run this (edited) work plan as it is.")
@click.option("--no-cache", "no_cache", is_flag=True,
              help="Neither reuse nor store cached partition results (everything is computed).")
@click.option("--refresh", "refresh", multiple=True, metavar="ID",
              help="Compute this partition again even if its result is cached (repeat it, or give ids separated by commas).")
@click.option("--audit", "audit", type=float, default=None, metavar="FRACTION",
              help="Recompute this share (0 to 1) of the cache hits, at least one, chosen at random, and compare each "
                   "result with the cached one: a mismatch (non-deterministic work(), inputs the key cannot see) is a "
                   "warning and `cache: mismatch` in the record, and the fresh result is used and replaces the entry. "
                   "Default: [cache] audit (0: no audit).")
@click.option("--require-cache", "require_cache", is_flag=True, default=None,
              help="Fail the run (exit 1) when a result could not be stored in the cache (a full or read-only share), "
                   "instead of a warning. Default: [cache] require.")
@click.option("--resume", "resume", metavar="RUN",
              help="Run a failed, interrupted or abandoned run again with its own args and plan: "
                   "only what did not finish is computed. RUN is a run id, a unique prefix, or 'last'.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@click.pass_context
def run_command(ctx: click.Context, app: str | None, mode: str | None, assignments: tuple[str, ...], plan_file: Path | None,
                no_cache: bool, refresh: tuple[str, ...], audit: float | None, require_cache: bool | None, resume: str | None,
                as_json: bool, progress: bool | None) -> None:
    """Run an app and write its record under the share (runs/APP/RUN_ID/).

    Partition results are cached under the share (cache/APP/): a partition whose code, args,
    payload, dependencies and kernel are unchanged is not computed again. `agi runs show RUN
    --why ID` says why a partition was computed; `--audit` checks a sample of the hits.
    """
    from ..base.errors import RunError, Terminated
    from ..base.events import ignore
    from .interrupt_view import RunEnd, print_stopped
    from .run_view import RunView

    if app is None:
        raise no_app(ctx, "run")
    args, cluster = overrides(assignments)
    env = env_for(ctx, app)
    env.prefetch_git_commit()  # git runs while the run machinery loads
    ids = tuple(pid.strip() for item in refresh for pid in item.split(",") if pid.strip())
    end = RunEnd(ignore)
    try:
        with RunView(enabled=sys.stderr.isatty() if progress is None else progress) as view:
            end.sink = view
            result = asyncio.run(AGI.run(env, mode=mode, args=args, cluster=cluster or None, plan=plan_file, use_cache=not no_cache,
                                         refresh=ids, resume=resume, audit=audit, require_cache=require_cache, on_event=end))
    except RunError as exc:
        if exc.result is not None:
            print_run(exc.result, as_json)
        raise
    except (KeyboardInterrupt, Terminated) as exc:  # the record is written: say what was kept and how to resume
        sigterm = isinstance(exc, Terminated)
        print_stopped(end, app, exc.message if isinstance(exc, Terminated) else "interrupted by Ctrl-C", apps_paths=apps_paths(ctx),
                      share=cluster.get("workers_data_path"), use_cache=not no_cache)
        ctx.exit(143 if sigterm else 130)
    print_run(result, as_json)


def _reruns(outcomes: list[Any]) -> list[str]:
    """The summary line's word on partitions whose work() ran again after a lost worker."""
    from ..provenance.reruns import reruns_phrase

    count = sum(1 for o in outcomes if o.retries)
    return [f"[yellow]{reruns_phrase(count)}[/]"] if count else []


def print_run(result: Any, as_json: bool) -> None:
    """A `RunResult` in one status line, its value, its output files and its record's path (or JSON)."""
    if as_json:
        print_json({"run_id": result.run_id, "app": result.app, "status": result.status, "mode": int(result.mode),
                    "duration_s": round(result.duration_s, 3), "value": result.value, "run_dir": str(result.run_dir),
                    "manifest": str(result.manifest), "out_dir": str(result.out_dir)})
        return
    from .output import escape

    out = lines_console()  # rich only on a terminal
    counts = {s: sum(o.status == s for o in result.outcomes) for s in ("ok", "failed", "skipped", "cached")}
    colour = "green" if result.status == "ok" else "red"
    about = [f"{counts['cached']} cached"] if counts["cached"] else []
    audited = sum(o.cache in ("audited", "mismatch") for o in result.outcomes)
    if audited:
        mismatched = sum(o.cache == "mismatch" for o in result.outcomes)
        colour = "red" if mismatched else "green"
        about.append(f"{audited} audited, [{colour}]{mismatched} mismatch{'es' if mismatched != 1 else ''}[/]")
    not_cached = None
    if any(o.cache for o in result.outcomes):  # a --no-cache run does not load the cache package for this
        from ..cache.write_failures import tally

        not_cached = tally(result.outcomes)
    if not_cached:
        about.append(f"[yellow]{escape(not_cached.summary())}[/]")
    about += _reruns(result.outcomes)
    cached = f" ({', '.join(about)})" if about else ""
    out.print(f"[bold {colour}]{result.status}[/]  {result.app} run {result.run_id}  mode {result.mode}  "
              f"{counts['ok'] + counts['cached']}/{len(result.plan.partitions)} partitions ok{cached}  {result.duration_s:.2f} s")
    value = result.value
    if isinstance(value, dict):
        if len(value) <= 12:
            out.print("result: " + escape(", ".join(f"{k}={v}" for k, v in value.items())))
    elif value is not None:
        out.print(f"result: {escape(repr(value))}")
    files = sorted(p for p in result.out_dir.rglob("*") if p.is_file()) if result.out_dir.is_dir() else []
    for path in files[:10]:
        out.print(f"output: {escape(str(path))}")
    if len(files) > 10:
        out.print(f"output: … {len(files) - 10} more in {result.out_dir}")
    out.print(f"record: {result.manifest}")
