"""``agi apps`` and ``agi settings``: the apps found, and one app's resolved settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import SET_HELP, apps_path_option, apps_paths, env_for, json_option, set_option
from .output import console, print_error, print_json, table

__all__ = ["apps_command", "settings_command"]


@click.group("apps", invoke_without_command=True)
@apps_path_option
@json_option
@click.pass_context
def apps_command(ctx: click.Context, as_json: bool) -> None:
    """List the apps found in the apps folders (./apps, then the bundled examples); `agi apps
    copy APP` makes an app of your own from one of them."""
    if ctx.invoked_subcommand is None:
        _list_apps(ctx, as_json)


@apps_command.command("copy")
@click.argument("app")
@click.option("--to", "destination", type=click.Path(file_okay=False, path_type=Path), default=Path("apps"), show_default=True,
              help="Folder to copy the app's project into (created if missing).")
@apps_path_option
@click.pass_context
def copy_app_command(ctx: click.Context, app: str, destination: Path) -> None:
    """Copy APP's project folder (e.g. a bundled example) into ./apps, to edit its code and
    settings there; `agi` then finds the copy first. Build outputs are left behind.

    \b
        agi apps copy mandelbrot && agi settings mandelbrot --set width=800
    """
    import shutil

    from ..base.errors import AgiError

    source = env_for(ctx, app).project_dir
    target = destination.absolute() / source.name
    if target.exists():
        raise AgiError(f"{target} exists already: nothing copied", fix="edit that copy, or remove it first, or pass --to DIR")
    destination.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    # copied under another name, then renamed: an interrupted copy never looks like an app
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "build", "dist", "*.egg-info", ".venv"))
    partial.rename(target)
    console().print(f"copied {source} to {target}")


def _list_apps(ctx: click.Context, as_json: bool) -> None:
    from ..app.env import default_apps_paths, discover_apps
    from ..settings.loading import read_toml

    paths = apps_paths(ctx) or default_apps_paths()
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


@click.command("settings")
@click.argument("app")
@apps_path_option
@set_option(SET_HELP + " Saved to app_settings.toml.")
@json_option
@click.pass_context
def settings_command(ctx: click.Context, app: str, assignments: tuple[str, ...], as_json: bool) -> None:
    """Show an app's resolved settings; with --set, change and save them.

    The file is validated before it is written; on any error it is left as it was. Comments and
    tables agi does not know are kept.
    """
    from ..settings import save_settings_values

    env = env_for(ctx, app)
    if assignments:
        settings = save_settings_values(env.settings_file, list(assignments), env.app_class.Args, env.profile_dirs)
        console(stderr=True).print(f"saved {env.settings_file}")
    else:
        settings = env.settings()
    data = settings.as_dict()
    if as_json:
        print_json(data | {"file": str(settings.path), "mode": int(settings.cluster.mode), "share": str(settings.share)})
        return
    from rich.markup import escape

    # one row per key: sub-tables ([cluster.ssh], [cluster.dask], ...) are spelled out key by key
    tables = [key for key, value in data["cluster"].items() if isinstance(value, dict) and key != "workers"]
    rows = [[f"args.{key}", value] for key, value in data["args"].items()]
    rows += [[f"cluster.{key}", value] for key, value in data["cluster"].items() if key not in ("workers", *tables)]
    rows += [[f"cluster.workers.{host}", spec] for host, spec in data["cluster"]["workers"].items()]
    rows += [[f"cluster.{name}.{key}", value] for name in tables for key, value in data["cluster"][name].items()]
    rows = [[key, _shown(settings, key, value)] for key, value in rows]
    rows += [["(mode)", str(settings.cluster.mode)], ["(share)", settings.share]]
    table(f"{env.name} settings  [dim]{escape(str(settings.path))}[/]", ["key", "value"],
          ([key, None if value is None else escape(str(value))] for key, value in rows))


def _shown(settings: Any, key: str, value: Any) -> Any:
    """A row's value as shown: a `Secret` as ``*** (env NAME)``, its reference only (it holds no value)."""
    from ..settings.secret_refs import Secret

    node: Any = settings
    for part in key.split("."):
        node = getattr(node, part, None)
    return str(node) if isinstance(node, Secret) else value
