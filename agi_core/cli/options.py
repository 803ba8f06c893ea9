"""Options and helpers the ``agi`` commands share: apps folders, ``--set``, modes, hosts, the share.

>>> cluster_overrides((), "10.0.0.1", ("10.0.0.2=2",))
{'scheduler': '10.0.0.1', 'workers': {'10.0.0.2': 2}}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "MODE_HELP",
    "SET_HELP",
    "apps_path_option",
    "apps_paths",
    "cluster_options",
    "cluster_overrides",
    "env_for",
    "json_option",
    "no_app",
    "overrides",
    "set_option",
]

F = TypeVar("F", bound=Callable[..., Any])

SET_HELP = ("KEY=VALUE override; repeatable. A bare key is an app argument (width=800); "
            "dotted keys reach settings (cluster.pool=true, cluster.workers.\"10.0.0.2\"=2).")
MODE_HELP = ("Run mode: an int 0-15, letters from p c d r (p=pool, c=cython, d=cluster, r=rapids), "
             "or POOL|CLUSTER. Default: from settings.")
APPS_PATH_HELP = "Folder holding app projects (repeatable). Default: ./apps, then the bundled examples."


def _add_apps_paths(ctx: click.Context, _param: click.Parameter, value: tuple[Path, ...]) -> None:
    """``--apps-path`` after a subcommand adds to those given before it (one list for the call)."""
    if value:
        obj = ctx.find_root().ensure_object(dict)
        obj["apps_path"] = [*(obj.get("apps_path") or []), *value]


def apps_path_option(function: F) -> F:
    """``--apps-path DIR`` (repeatable), before a subcommand or after it: ``agi run APP --apps-path DIR``."""
    return click.option("--apps-path", type=click.Path(file_okay=False, path_type=Path), multiple=True,
                        expose_value=False, callback=_add_apps_paths, help=APPS_PATH_HELP)(function)


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(function)


def set_option(help_text: str = SET_HELP) -> Callable[[F], F]:
    return click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help=help_text)


def apps_paths(ctx: click.Context) -> list[Path] | None:
    """The apps folders of this call (before and after the subcommand), or None for the default."""
    return list(ctx.find_root().ensure_object(dict).get("apps_path") or []) or None


def no_app(ctx: click.Context, command: str) -> Exception:
    """The error of ``agi COMMAND`` given no app: it names the apps found, and how to give one."""
    from ..app.env import default_apps_paths, discover_apps
    from ..base.errors import AgiError

    paths = apps_paths(ctx) or default_apps_paths()
    names = sorted(discover_apps(paths))
    if not names:
        return AgiError(f"agi {command} needs an app, and none is found in {', '.join(map(str, paths)) or '(no apps folder)'}",
                        fix="create apps/NAME_project with a pyproject.toml (agi apps copy mandelbrot), or pass --apps-path")
    example = "mandelbrot" if "mandelbrot" in names else names[0]
    return AgiError(f"agi {command} needs an app: {', '.join(names)}", fix=f"agi {command} {example}  (`agi apps` describes them)")


def env_for(ctx: click.Context, app: str) -> Any:
    """The `AgiEnv` of APP, found in this call's apps folders."""
    from ..app.env import AgiEnv

    root = ctx.find_root().ensure_object(dict)
    return AgiEnv(app=app, apps_path=apps_paths(ctx), verbose=root.get("verbose", 0))


def overrides(assignments: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` assignments as (app args, cluster settings) overrides."""
    from ..settings import assignments_to_overrides

    return assignments_to_overrides(list(assignments))


def cluster_overrides(assignments: tuple[str, ...], scheduler: str | None, workers: tuple[str, ...]) -> dict[str, Any]:
    """Cluster overrides from ``--set``, ``--scheduler`` and ``--workers HOST=COUNT`` (hosts validated)."""
    from ..base.errors import SettingsError
    from ..base.hosts import HostAddress, HostAddressError

    _, cluster = overrides(assignments)
    if scheduler:
        cluster["scheduler"] = scheduler
    if workers:
        worker_map: dict[str, int] = {}
        for item in workers:
            host, _, count = item.rpartition("=")  # the last '=': a host never holds one, "[::1]=2" splits right
            if not host or not count.isdigit():
                raise SettingsError(f"invalid --workers {item!r}: expected HOST=COUNT", fix="write e.g. --workers 10.0.0.2=2")
            try:
                HostAddress.parse(host)
            except HostAddressError as exc:
                raise SettingsError(f"invalid --workers {item!r}: {exc.message}", fix=exc.fix) from None
            worker_map[host.strip()] = int(count)
        cluster["workers"] = worker_map
    return cluster


_CLUSTER_OPTIONS = [
    click.option("--scheduler", default=None, help="Scheduler host[:port] (default: [cluster] scheduler)."),
    click.option("--workers", "workers", multiple=True, metavar="HOST=COUNT", help="Worker map entry; repeatable (default: [cluster.workers])."),
    set_option(),
    click.option("--modes", "modes", default=None, help="Modes to install for (the cython bit builds kernels). Default: from settings."),
    json_option,
]


def cluster_options(function: F) -> F:
    """The host options of install and doctor: --scheduler, --workers, --set, --modes, --json."""
    for option in reversed(_CLUSTER_OPTIONS):
        function = option(function)
    return function
