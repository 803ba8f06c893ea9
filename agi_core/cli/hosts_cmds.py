"""``agi install``, ``agi doctor`` and ``agi hosts trust``: the hosts an app runs on."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ..base.errors import AgiError
from .options import apps_path_option, cluster_options, cluster_overrides, env_for
from .output import console, print_error, print_json, table

__all__ = ["doctor_command", "hosts_group", "install_command"]


@click.command("install")
@click.argument("app")
@apps_path_option
@cluster_options
@click.option("--progress/--no-progress", default=None, help="Live per-host display (default: when stderr is a terminal).")
@click.pass_context
def install_command(ctx: click.Context, app: str, scheduler: str | None, workers: tuple[str, ...], assignments: tuple[str, ...],
                    modes: str | None, as_json: bool, progress: bool | None) -> None:
    """Install APP's worker environment on the scheduler host and every worker host.

    Over SSH (strict host keys) for remote hosts, locally for this machine: uv, a wheelhouse of
    pinned dependencies built here (hosts need no internet), the app's venv, compiled Cython
    kernels when the cython bit is enabled. An unchanged re-install does nothing.
    """
    from ..agi import AGI
    from ..install import InstallError
    from .install_view import InstallView, print_host_output

    cluster = cluster_overrides(assignments, scheduler, workers)
    env = env_for(ctx, app)
    show = sys.stderr.isatty() if progress is None else progress
    verbose = bool((ctx.obj or {}).get("verbose"))  # -v: what uv and the Cython build print, per host
    try:
        with InstallView(output=verbose) if show else contextlib.nullcontext() as view:
            sink = view or (print_host_output if verbose else None)
            report = asyncio.run(AGI.install(env, modes_enabled=modes, cluster=cluster or None, on_event=sink))
    except InstallError as exc:
        _print_install(exc.report, as_json)
        raise
    _print_install(report, as_json)


def _print_install(report: Any, as_json: bool) -> None:
    if as_json:
        print_json({"seconds": round(report.seconds, 3), "hosts": [
            {"host": h.host, "roles": h.roles, "status": h.status, "detail": h.detail, "cause": h.cause, "fix": h.fix,
             "seconds": round(h.seconds, 3), "uploaded_files": h.uploaded_files, "uploaded_bytes": h.uploaded_bytes,
             "versions": h.versions, "info": h.info.as_dict() if h.info else None} for h in report.hosts]})
        return
    colour = {"installed": "green", "updated": "green", "unchanged": "cyan", "failed": "red"}
    table(f"install ({report.seconds:.1f} s)", ["host", "roles", "status", "detail", "python", "cores", "gpu", "uploaded", "time"], (
        [h.host, ", ".join(h.roles), f"[{colour.get(h.status, 'white')}]{h.status}[/]", escape(h.cause or h.detail or ""),
         h.info.python_version if h.info else "", h.info.cores if h.info else "", ", ".join(h.info.gpus) if h.info and h.info.gpus else "",
         f"{h.uploaded_files} files, {h.uploaded_bytes / 1e6:.1f} MB" if h.uploaded_files else "", f"{h.seconds:.1f} s"]
        for h in report.hosts))


@click.command("doctor")
@click.argument("app")
@apps_path_option
@cluster_options
@click.pass_context
def doctor_command(ctx: click.Context, app: str, scheduler: str | None, workers: tuple[str, ...], assignments: tuple[str, ...],
                   modes: str | None, as_json: bool) -> None:
    """Check APP's hosts without changing anything; exit 1 when something is wrong.

    Checks SSH, Python, uv, the venv and its install fingerprint, dask/distributed versions against
    this machine's, GPUs, and that the share is the same directory on every node.
    """
    from ..agi import AGI

    cluster = cluster_overrides(assignments, scheduler, workers)
    report = asyncio.run(AGI.doctor(env_for(ctx, app), modes_enabled=modes, cluster=cluster or None))
    if as_json:
        print_json({"ok": report.ok, "share": report.share, "warnings": report.warnings, "hosts": [
            {"host": h.host, "roles": h.roles, "ok": h.ok, "checks": [vars(c) for c in h.checks]} for h in report.hosts]})
    else:
        table("doctor", ["host", "check", "", "detail", "fix"], (
            # details and fixes name settings keys such as "[cluster.ssh] connect_timeout": not styles
            [h.host if i == 0 else "", c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", escape(c.detail or ""), escape(c.fix or "")]
            for h in report.hosts for i, c in enumerate(h.checks)))
        for warning in report.warnings:
            console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}")
    if not report.ok:
        bad = [h.host for h in report.hosts if not h.ok]
        print_error(f"doctor found problems on {', '.join(bad)}", "see the fix column above")
        ctx.exit(1)


@click.group("hosts")
def hosts_group() -> None:
    """Manage the hosts agi reaches over SSH."""


@hosts_group.command("trust")
@click.argument("host")
@click.option("--port", default=22, show_default=True, help="SSH port.")
@click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path), default=Path("~/.ssh/known_hosts"),
              show_default=True, help="known_hosts file to add the key to (use [cluster.ssh] known_hosts).")
@click.option("--yes", "-y", is_flag=True, help="Record the key without asking.")
def hosts_trust(host: str, port: int, known_hosts: Path, yes: bool) -> None:
    """Show HOST's SSH key fingerprint and record it in known_hosts once you confirm."""
    from ..ssh import fetch_host_key, trust_host

    known_hosts = known_hosts.expanduser()
    info = asyncio.run(fetch_host_key(host, port, known_hosts))
    out = console()
    if info.known:
        out.print(f"{host}: {info.algorithm} {info.fingerprint} is already trusted in {known_hosts}")
        return
    if info.other_known:
        raise AgiError(f"{host}: host key CHANGED: {known_hosts} holds another key; the server presents {info.algorithm} {info.fingerprint}",
                       fix=f"if the host was reinstalled on purpose: ssh-keygen -R {host} -f {known_hosts}, then run this again")
    out.print(f"{host}:{port} presents {info.algorithm} key {info.fingerprint}")
    if not yes and not click.confirm("Trust this key?", default=False):
        raise AgiError(f"{host}: key not trusted, nothing written", fix="compare the fingerprint with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*.pub)")
    trust_host(info, known_hosts)
    out.print(f"recorded in {known_hosts}")
