"""``agi cluster up|status|down``: a warm Dask cluster that runs of the app attach to."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import click

from .options import apps_path_option, env_for, json_option, overrides, set_option
from .output import console, print_json, table

__all__ = ["cluster_group"]


@click.group("cluster")
def cluster_group() -> None:
    """Keep a Dask cluster running between runs (a warm cluster); runs of the app attach to it."""


@cluster_group.command("up")
@click.argument("app")
@apps_path_option
@click.option("--mode", "-m", default=None, help="Mode whose pool bit sets worker threads (default: from settings).")
@set_option()
@click.option("--dry-run", is_flag=True, help="Print what would start (scheduler, workers; or what the backend submits, e.g. a batch job script) and start nothing.")
@click.pass_context
def cluster_up_command(ctx: click.Context, app: str, mode: str | None, assignments: tuple[str, ...], dry_run: bool) -> None:
    """Start APP's scheduler and workers (from its settings) and leave them running."""
    import sys

    from ..agi import AGI
    from .install_view import InstallView
    from .run_view import RunView

    _, cluster = overrides(assignments)
    env = env_for(ctx, app)
    if dry_run:
        _print_spec(env, mode, cluster)
        return
    if sys.stderr.isatty():  # a live row per host while the processes start
        with InstallView() as hosts, RunView(enabled=True) as notes:
            status = asyncio.run(AGI.cluster_up(env, mode=mode, cluster=cluster or None, on_event=lambda e: (hosts(e), notes(e))))
    else:
        status = asyncio.run(AGI.cluster_up(env, mode=mode, cluster=cluster or None))
    _print_cluster(status, False)


@cluster_group.command("status")
@click.argument("app")
@apps_path_option
@set_option()
@json_option
@click.pass_context
def cluster_status_command(ctx: click.Context, app: str, assignments: tuple[str, ...], as_json: bool) -> None:
    """Show whether APP's warm cluster runs, and its workers (exit 1 when it does not run)."""
    from ..agi import AGI

    _, cluster = overrides(assignments)
    status = asyncio.run(AGI.cluster_status(env_for(ctx, app), cluster=cluster or None))
    _print_cluster(status, as_json)
    if not status.running:
        ctx.exit(1)


@cluster_group.command("down")
@click.argument("app")
@apps_path_option
@set_option()
@click.pass_context
def cluster_down_command(ctx: click.Context, app: str, assignments: tuple[str, ...]) -> None:
    """Stop every process of APP's warm cluster."""
    from ..agi import AGI

    _, cluster = overrides(assignments)
    count = asyncio.run(AGI.cluster_down(env_for(ctx, app), cluster=cluster or None))
    console().print(f"stopped {count} processes" if count else f"no warm cluster of {app}")


@cluster_group.command("ports")
@click.argument("app")
@apps_path_option
@set_option()
@click.option("--manager", metavar="ADDRESS", default=None,
              help="This machine's address as the cluster sees it, for the firewall rules (default: <manager>).")
@click.option("--firewall", type=click.Choice(["ufw", "nft"]), default=None,
              help="Print the firewall commands (ufw, or nft for the inet filter table) to run on each host instead of the matrix.")
@json_option
@click.pass_context
def cluster_ports_command(ctx: click.Context, app: str, assignments: tuple[str, ...], manager: str | None,
                          firewall: str | None, as_json: bool) -> None:
    """Show the TCP ports APP's cluster needs open, from its settings (nothing is contacted).

    Each row is a connection: FROM opens it to TO's PORTS. Ports a process picks freely show as
    Linux's ephemeral range; pin them with [cluster.dask] worker_ports and nanny_ports. With
    --firewall, the rules to add on each host, e.g.:

    \b
        agi cluster ports mandelbrot --manager 10.0.0.9 --firewall ufw
    """
    from ..cluster.ports import firewall_rules, port_rules

    _, cluster = overrides(assignments)
    rules = port_rules(env_for(ctx, app).settings(cluster=cluster or None).cluster)
    if as_json:
        print_json([dataclasses.asdict(rule) for rule in rules])
    elif not rules:
        console().print("nothing to open: every process of this cluster runs on this machine")
    elif firewall:
        for host, lines in firewall_rules(rules, style=firewall, manager=manager).items():
            click.echo(f"# on {host}")
            click.echo("\n".join(lines))
    else:
        from rich.markup import escape  # "[cluster.dask]" is not a style

        table(None, ["from", "to", "ports", "what", "setting"],
              ([rule.source, rule.destination, rule.ports, rule.purpose, escape(rule.setting)] for rule in rules))


def _print_spec(env: Any, mode: str | None, cluster: dict[str, Any]) -> None:
    """What `agi cluster up` would start, from the resolved settings; nothing is contacted."""
    from rich.markup import escape

    from ..base.modes import Mode
    from ..cluster import spec_for
    from ..run import resolve

    request = resolve(env, mode=mode, cluster=cluster or None, with_bits=Mode.CLUSTER)
    spec = spec_for(request.cluster, request.shape, env.name, app_distribution=env.distribution, app_version=env.version())
    where = "this machine" if spec.embedded else spec.scheduler.host
    port = f"port {spec.scheduler.port}" if spec.scheduler.port else "any free port"
    console().print(escape(f"{env.name}: backend {spec.backend}, scheduler on {where} ({port}), {len(spec.workers)} worker(s)"))
    text = _backend_dry_run(spec)
    if text is not None:
        click.echo(text)
        return
    table(None, ["worker", "host", "threads", "gpu"],
          ([w.name, w.host, w.nthreads or "cores / workers", "GPU=1" if w.gpu else ""] for w in spec.workers))


def _backend_dry_run(spec: Any) -> str | None:
    """The backend's own `--dry-run` text (`ClusterBackend.dry_run`: a batch script...), or None;
    asked of a warm one, since `up` starts a warm cluster (its credentials folder differs)."""
    from ..cluster import backend_class

    return backend_class(spec.backend).warm(spec).dry_run()


def _print_cluster(status: Any, as_json: bool) -> None:
    if as_json:
        print_json(status.model_dump(mode="json") if hasattr(status, "model_dump") else dataclasses.asdict(status))
        return
    _print_warnings(getattr(status, "warnings", ()))
    out = console()
    if not status.running:
        out.print(f"{status.app}: [yellow]not running[/]" + (f" — {status.problem}" if status.problem else ""))
        return
    out.print(f"{status.app}: [green]running[/] at {status.address}" + (f", dashboard {status.dashboard}" if status.dashboard else ""))
    if not status.dashboard:
        out.print(_no_dashboard())
    table(None, ["worker", "address", "threads"], ([w.name, w.address, w.nthreads] for w in status.workers))


def _print_warnings(warnings: Any) -> None:
    """``warning:`` lines on standard error (plain TCP, say)."""
    from rich.markup import escape

    for warning in warnings:
        console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}")


def _no_dashboard() -> str:
    """Why a running cluster has no dashboard, and how to get one."""
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        return "no dashboard: bokeh is not installed (pip install 'agi-orchestrator[dashboard]', or ./scripts/example)"
    return "no dashboard: [cluster.dask] dashboard_port is empty (set a port, e.g. 8787)"
