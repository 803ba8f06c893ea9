"""``agi``: apps, settings, work plans, runs and their records, from a terminal.

Every command takes ``--help``. Errors print what failed and the fix, and exit non-zero; add
``-v`` for the traceback.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from ..errors import AgiError
from .output import console, print_error, print_json, table

__all__ = ["main"]

_SET_HELP = ("KEY=VALUE override; repeatable. A bare key is an app argument (width=800); "
             "dotted keys reach settings (cluster.pool=true, cluster.workers.\"10.0.0.2\"=2).")
_MODE_HELP = "Run mode: an int 0-15, letters from p c d r (p=pool, c=cython, d=cluster, r=rapids), or POOL|CLUSTER. Default: from settings."


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
@click.option("--apps-path", type=click.Path(file_okay=False, path_type=Path), multiple=True,
              help="Folder holding app projects (repeatable). Default: ./apps, then the bundled examples.")
@click.option("-v", "--verbose", count=True, help="Show tracebacks and more detail.")
@click.version_option(package_name="agi-orchestrator", prog_name="agi")
@click.pass_context
def cli(ctx: click.Context, apps_path: tuple[Path, ...], verbose: int) -> None:
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
    ctx.obj = {"apps_path": list(apps_path) or None, "verbose": verbose}


def _env(ctx: click.Context, app: str) -> Any:
    from ..env import AgiEnv

    return AgiEnv(app=app, apps_path=ctx.obj["apps_path"], verbose=ctx.obj["verbose"])


def _overrides(assignments: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..settings import assignments_to_overrides

    return assignments_to_overrides(list(assignments))


# -- apps, settings --------------------------------------------------------------------------


@cli.command("apps")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def apps_command(ctx: click.Context, as_json: bool) -> None:
    """List the apps found in the apps folders."""
    from ..env import default_apps_paths, discover_apps
    from ..settings import read_toml

    paths = ctx.obj["apps_path"] or default_apps_paths()
    found = discover_apps(paths)
    rows = []
    for name, folder in sorted(found.items()):
        project = read_toml(folder / "pyproject.toml").get("project", {})
        rows.append({"name": name, "version": project.get("version", ""), "description": project.get("description", ""),
                     "path": str(folder)})
    if as_json:
        print_json(rows)
    elif not rows:
        print_error(f"no apps found in {', '.join(map(str, paths)) or '(no apps folder)'}",
                    "create apps/NAME_project with a pyproject.toml, or pass --apps-path")
        ctx.exit(1)
    else:
        table(None, ["app", "version", "description", "path"], ([r["name"], r["version"], r["description"], r["path"]] for r in rows))


@cli.command("settings")
@click.argument("app")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help=_SET_HELP + " Saved to app_settings.toml.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def settings_command(ctx: click.Context, app: str, assignments: tuple[str, ...], as_json: bool) -> None:
    """Show an app's resolved settings; with --set, change and save them.

    The file is validated before it is written; on any error it is left as it was. Comments and
    tables agi does not know are kept.
    """
    from ..settings import save_settings_values

    env = _env(ctx, app)
    if assignments:
        settings = save_settings_values(env.settings_file, list(assignments), env.app_class.Args, env.profile_dirs)
        console(stderr=True).print(f"saved {env.settings_file}")
    else:
        settings = env.settings()
    data = settings.as_dict()
    if as_json:
        print_json(data | {"file": str(settings.path), "mode": int(settings.cluster.mode), "share": str(settings.share)})
        return
    rows = [[f"args.{key}", value] for key, value in data["args"].items()]
    rows += [[f"cluster.{key}", value] for key, value in data["cluster"].items() if key not in ("workers", "ssh", "install")]
    rows += [[f"cluster.workers.{host}", spec] for host, spec in data["cluster"]["workers"].items()]
    rows += [[f"cluster.{table_name}.{key}", value] for table_name in ("ssh", "install") for key, value in data["cluster"][table_name].items()]
    rows += [["(mode)", str(settings.cluster.mode)], ["(share)", settings.share]]
    table(f"{env.name} settings  [dim]{settings.path}[/]", ["key", "value"], rows)


# -- plans and runs ----------------------------------------------------------------------------


@cli.command("distrib")
@click.argument("app")
@click.option("--mode", "-m", default=None, help=_MODE_HELP)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the plan to this JSON file (to edit, then `agi run --plan`).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead of a tree.")
@click.pass_context
def distrib_command(ctx: click.Context, app: str, mode: str | None, assignments: tuple[str, ...], out: Path | None, as_json: bool) -> None:
    """Compute the balanced work plan of a run, without running it."""
    from ..agi import AGI

    args, cluster = _overrides(assignments)
    plan = asyncio.run(AGI.get_distrib(_env(ctx, app), mode=mode, args=args, cluster=cluster or None))
    if out:
        plan.save(out)
    if as_json:
        sys.stdout.write(plan.to_json())
        return
    console().print(plan.tree())
    if out:
        console(stderr=True).print(f"wrote {out}  (edit the assignment, then: agi run {app} --plan {out})")


@cli.command("run")
@click.argument("app")
@click.option("--mode", "-m", default=None, help=_MODE_HELP)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path), help="Run this (edited) work plan as it is.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@click.pass_context
def run_command(ctx: click.Context, app: str, mode: str | None, assignments: tuple[str, ...], plan_file: Path | None,
                as_json: bool, progress: bool | None) -> None:
    """Run an app and write its record under the share (runs/APP/RUN_ID/)."""
    from ..agi import AGI
    from ..errors import RunError

    args, cluster = _overrides(assignments)
    env = _env(ctx, app)
    try:
        result = asyncio.run(AGI.run(env, mode=mode, args=args, cluster=cluster or None, plan=plan_file, progress=progress))
    except RunError as exc:
        if exc.result is not None:
            _print_run(exc.result, as_json)
        raise
    _print_run(result, as_json)


def _print_run(result: Any, as_json: bool) -> None:
    if as_json:
        print_json({"run_id": result.run_id, "app": result.app, "status": result.status, "mode": int(result.mode),
                    "duration_s": round(result.duration_s, 3), "value": result.value, "run_dir": str(result.run_dir),
                    "manifest": str(result.manifest), "out_dir": str(result.out_dir)})
        return
    out = console()
    counts = {s: sum(o.status == s for o in result.outcomes) for s in ("ok", "failed", "skipped")}
    colour = "green" if result.status == "ok" else "red"
    out.print(f"[bold {colour}]{result.status}[/]  {result.app} run {result.run_id}  mode {result.mode}  "
              f"{counts['ok']}/{len(result.plan.partitions)} partitions ok  {result.duration_s:.2f} s")
    if result.value is not None and not isinstance(result.value, dict) or isinstance(result.value, dict) and len(result.value) <= 12:
        out.print(f"result: {result.value!r}" if not isinstance(result.value, dict) else
                  "result: " + ", ".join(f"{k}={v}" for k, v in result.value.items()))
    files = sorted(p for p in result.out_dir.rglob("*") if p.is_file()) if result.out_dir.is_dir() else []
    for path in files[:10]:
        out.print(f"output: {path}")
    if len(files) > 10:
        out.print(f"output: … {len(files) - 10} more in {result.out_dir}")
    out.print(f"record: {result.manifest}")


# -- install, doctor, hosts -----------------------------------------------------------------------


def _cluster_overrides(assignments: tuple[str, ...], scheduler: str | None, workers: tuple[str, ...]) -> dict[str, Any]:
    from ..errors import SettingsError

    _, cluster = _overrides(assignments)
    if scheduler:
        cluster["scheduler"] = scheduler
    if workers:
        worker_map: dict[str, int] = {}
        for item in workers:
            host, _, count = item.rpartition("=")
            if not host or not count.isdigit():
                raise SettingsError(f"invalid --workers {item!r}: expected HOST=COUNT", fix="write e.g. --workers 10.0.0.2=2")
            worker_map[host] = int(count)
        cluster["workers"] = worker_map
    return cluster


_CLUSTER_OPTIONS = [
    click.option("--scheduler", default=None, help="Scheduler host[:port] (default: [cluster] scheduler)."),
    click.option("--workers", "workers", multiple=True, metavar="HOST=COUNT", help="Worker map entry; repeatable (default: [cluster.workers])."),
    click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help=_SET_HELP),
    click.option("--modes", "modes", default=None, help="Modes to install for (the cython bit builds kernels). Default: from settings."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
]


def _cluster_options(function: Any) -> Any:
    for option in reversed(_CLUSTER_OPTIONS):
        function = option(function)
    return function


@cli.command("install")
@click.argument("app")
@_cluster_options
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

    cluster = _cluster_overrides(assignments, scheduler, workers)
    try:
        report = asyncio.run(AGI.install(_env(ctx, app), modes_enabled=modes, cluster=cluster or None, progress=progress))
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
        [h.host, ", ".join(h.roles), f"[{colour.get(h.status, 'white')}]{h.status}[/]", h.cause or h.detail,
         h.info.python_version if h.info else "", h.info.cores if h.info else "", ", ".join(h.info.gpus) if h.info and h.info.gpus else "",
         f"{h.uploaded_files} files, {h.uploaded_bytes / 1e6:.1f} MB" if h.uploaded_files else "", f"{h.seconds:.1f} s"]
        for h in report.hosts))


@cli.command("doctor")
@click.argument("app")
@_cluster_options
@click.pass_context
def doctor_command(ctx: click.Context, app: str, scheduler: str | None, workers: tuple[str, ...], assignments: tuple[str, ...],
                   modes: str | None, as_json: bool) -> None:
    """Check APP's hosts without changing anything; exit 1 when something is wrong.

    Checks SSH, Python, uv, the venv and its install fingerprint, dask/distributed versions against
    this machine's, GPUs, and that the share is the same directory on every node.
    """
    from ..agi import AGI

    cluster = _cluster_overrides(assignments, scheduler, workers)
    report = asyncio.run(AGI.doctor(_env(ctx, app), modes_enabled=modes, cluster=cluster or None))
    if as_json:
        print_json({"ok": report.ok, "share": report.share, "hosts": [
            {"host": h.host, "roles": h.roles, "ok": h.ok, "checks": [vars(c) for c in h.checks]} for h in report.hosts]})
    else:
        table("doctor", ["host", "check", "", "detail", "fix"], (
            [h.host if i == 0 else "", c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", c.detail, c.fix or ""]
            for h in report.hosts for i, c in enumerate(h.checks)))
    if not report.ok:
        bad = [h.host for h in report.hosts if not h.ok]
        print_error(f"doctor found problems on {', '.join(bad)}", "see the fix column above")
        ctx.exit(1)


@cli.group("hosts")
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


# -- warm clusters ---------------------------------------------------------------------------------


@cli.group("cluster")
def cluster_group() -> None:
    """Keep a Dask cluster running between runs (a warm cluster); runs of the app attach to it."""


_MODE_OPTION = click.option("--mode", "-m", default=None, help="Mode whose pool bit sets worker threads (default: from settings).")


@cluster_group.command("up")
@click.argument("app")
@_MODE_OPTION
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.pass_context
def cluster_up_command(ctx: click.Context, app: str, mode: str | None, assignments: tuple[str, ...]) -> None:
    """Start APP's scheduler and workers (from its settings) and leave them running."""
    from ..cluster.manage import cluster_up

    _, cluster = _overrides(assignments)
    status = asyncio.run(cluster_up(_env(ctx, app), mode=mode, cluster=cluster or None))
    _print_cluster(status, False)


@cluster_group.command("status")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def cluster_status_command(ctx: click.Context, app: str, as_json: bool) -> None:
    """Show whether APP's warm cluster runs, and its workers (exit 1 when it does not run)."""
    from ..cluster.manage import cluster_status

    status = asyncio.run(cluster_status(_env(ctx, app)))
    _print_cluster(status, as_json)
    if not status.running:
        ctx.exit(1)


@cluster_group.command("down")
@click.argument("app")
@click.pass_context
def cluster_down_command(ctx: click.Context, app: str) -> None:
    """Stop every process of APP's warm cluster."""
    from ..cluster.manage import cluster_down

    count = asyncio.run(cluster_down(_env(ctx, app)))
    console().print(f"stopped {count} processes" if count else f"no warm cluster of {app}")


def _print_cluster(status: Any, as_json: bool) -> None:
    if as_json:
        print_json(vars(status))
        return
    out = console()
    if not status.running:
        out.print(f"{status.app}: [yellow]not running[/]" + (f" — {status.problem}" if status.problem else ""))
        return
    out.print(f"{status.app}: [green]running[/] at {status.address}" + (f", dashboard {status.dashboard}" if status.dashboard else ""))
    table(None, ["worker", "address", "threads"], ([w["name"], w["address"], w["nthreads"]] for w in status.workers))


# -- run records ---------------------------------------------------------------------------------


@cli.group("runs")
def runs_group() -> None:
    """Read the run records on the share."""


def _store(ctx: click.Context, app: str | None, share: Path | None) -> Any:
    from ..provenance import RunStore
    from ..settings import default_share

    if share:
        return RunStore(share)
    if app:
        return RunStore(_env(ctx, app).settings().share)
    return RunStore(default_share())


_SHARE_OPTION = click.option("--share", type=click.Path(file_okay=False, path_type=Path),
                             help="The share to read (default: the app's workers_data_path, else the local default share).")


@runs_group.command("list")
@click.argument("app", required=False)
@_SHARE_OPTION
@click.option("--limit", "-n", default=20, show_default=True, help="Show at most this many runs (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def runs_list(ctx: click.Context, app: str | None, share: Path | None, limit: int, as_json: bool) -> None:
    """List recorded runs, newest first (of APP, or of every app on the share)."""
    store = _store(ctx, app, share)
    name = _env(ctx, app).name if app else None
    records = store.list(name)[: limit or None]
    if as_json:
        print_json([{k: r.get(k) for k in ("run_id", "app", "status", "mode", "started", "duration_s", "totals", "path")} for r in records])
        return
    if not records:
        console(stderr=True).print(f"no runs recorded under {store.root}")
        return
    table(f"runs under {store.root}", ["run", "app", "status", "mode", "started", "duration", "partitions ok/all"], (
        [r.get("run_id"), r.get("app", {}).get("name"), r.get("status"),
         f"{r.get('mode', {}).get('value', '')} {r.get('mode', {}).get('letters', '')}".strip(), r.get("started", ""),
         f"{r['duration_s']:.2f} s" if isinstance(r.get("duration_s"), int | float) else "",
         f"{r.get('totals', {}).get('ok', '')}/{r.get('totals', {}).get('partitions', '')}"] for r in records))


@runs_group.command("show")
@click.argument("run")
@click.option("--app", default=None, help="Read APP's share (its workers_data_path).")
@_SHARE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.pass_context
def runs_show(ctx: click.Context, run: str, app: str | None, share: Path | None, as_json: bool) -> None:
    """Show one run record. RUN is a run id, a unique prefix of one, `last`, or a record's path."""
    record = _store(ctx, app, share).find(run)
    if as_json:
        print_json(record)
        return
    out = console()
    mode = record.get("mode", {})
    out.print(f"[bold]{record['app']['name']}[/] run {record['run_id']}: [bold]{record['status']}[/]  "
              f"mode {mode.get('value')} ({mode.get('letters') or '-'})  {record.get('duration_s', 0):.2f} s")
    app_info = record["app"]
    out.print(f"app version {app_info.get('version')}  code {str(app_info.get('code_hash'))[:12]}  git {app_info.get('git_commit') or '-'}")
    out.print(f"args: {record.get('args')}")
    out.print(f"settings hash {str(record.get('settings_hash'))[:12]}  plan {str(record.get('plan', {}).get('fingerprint'))[:12]}")
    if record.get("error"):
        out.print(f"[red]error:[/] {record['error']}")
    parts = record.get("partitions", [])
    table(f"{len(parts)} partitions", ["id", "status", "slot", "worker", "kernel", "device", "duration"], (
        [p.get("id"), p.get("status"), p.get("slot"), p.get("worker", ""), p.get("kernel", ""), p.get("device", ""),
         f"{p['duration_s']:.3f} s" if "duration_s" in p else ""] for p in parts[:200]))
    failed = [p for p in parts if p.get("status") == "failed"]
    for p in failed[:3]:
        out.print(f"[red]{p['id']} failed:[/]\n{p.get('error', '').rstrip()}")
    out.print(f"record: {record.get('path')}")


def main() -> None:
    """Entry point of the ``agi`` console script."""
    cli(prog_name="agi")
