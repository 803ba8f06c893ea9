"""``agi ui [APP]``: serve the web UI on this machine, and print its URL with the token."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from ..base.errors import AgiError
from .options import apps_path_option, apps_paths
from .output import console

__all__ = ["ui_command"]

UI_PACKAGES = ("fastapi", "jinja2", "uvicorn", "multipart")


def _check_installed() -> None:
    missing = [name for name in UI_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise AgiError(f"the web UI needs {', '.join(missing)}, which are not installed",
                       fix="pip install 'agi-orchestrator[ui]'  (or: uv pip install fastapi jinja2 uvicorn)")


@click.command("ui")
@click.argument("app", required=False)
@apps_path_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port (0: any free port).")
@click.option("--allow-remote", is_flag=True, help="Allow a non-loopback --host (anyone reaching it, with the token, runs code).")
@click.option("--share", type=click.Path(file_okay=False, path_type=Path), help="The cluster share to use (default: settings).")
@click.option("--file", "steps_file", type=click.Path(dir_okay=False, path_type=Path), default=Path("lab_steps.toml"),
              show_default=True, help="The pipeline file of the PIPELINE page.")
@click.pass_context
def ui_command(ctx: click.Context, app: str | None, host: str, port: int, allow_remote: bool, share: Path | None,
               steps_file: Path) -> None:
    """Serve the web UI (ORCHESTRATE, PIPELINE, RUNS) and print its URL.

    It listens on 127.0.0.1 and every request needs the token in the printed URL (a cookie keeps
    it after the first visit). Stop it with Ctrl-C.
    """
    _check_installed()
    import socket

    import uvicorn

    from ..ui import UiConfig, create_app
    from ..ui.config import check_bind

    paths = apps_paths(ctx)
    config = UiConfig(apps_path=tuple(paths) if paths else None, app=app, share=share.absolute() if share else None,
                      steps_file=steps_file, host=host, port=port, allow_remote=allow_remote)
    check_bind(config)
    if app is not None:
        from ..ui.apps import env_for

        env_for(config, app)  # an unknown app is an error now, not a blank page
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise AgiError(f"cannot listen on {host}:{port}: {exc.strerror}", fix="choose another --port (0: any free port)") from None
    url = config.url(sock.getsockname()[1]) + (f"&app={app}" if app else "")
    out = console()
    out.print(f"agi ui serving [bold]{app or 'all apps'}[/] — open:\n  [link={url}]{url}[/link]\n[dim]Ctrl-C stops it.[/]")
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", access_log=False))
    server.run(sockets=[sock])
