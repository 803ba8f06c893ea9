"""`render_snippet`: the Python of one `AGI.*` call, from a resolved `RunRequest`.

The snippet pins every resolved value (app folder, scheduler, worker map, mode, args, share), so
it runs the same thing as the `agi` command that generated it, from any directory. Its header
names the snippet API, the app, the kind, the settings file and the hash it came from.

>>> from datetime import datetime, timezone
>>> from agi_core import AgiEnv
>>> from agi_core.run import resolve
>>> env = AgiEnv(app="mandelbrot")
>>> request = resolve(env, mode="p", args={"bands": 4})
>>> text = render_snippet("distrib", request, env, assignments=["bands=4"], mode="p",
...                       generated=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
>>> print(text.splitlines()[0])
# agi.snippet.v1  kind=distrib  app=mandelbrot
>>> "plan = await AGI.get_distrib(" in text and "'bands': 4" in text and "mode=1,  # p" in text
True
>>> f'SETTINGS_HASH = {request.settings_hash!r}' in text and "generated: 2026-01-02T03:04:05Z" in text
True
>>> _ = compile(text, "snippet.py", "exec")
"""

from __future__ import annotations

import os
import pprint
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SettingsError
from ..modes import Mode
from ..settings import assignments_to_overrides

if TYPE_CHECKING:
    from ..env import AgiEnv
    from ..run import RunRequest

__all__ = ["KINDS", "SNIPPET_API", "regenerate_command", "render_snippet"]

SNIPPET_API = "agi.snippet.v1"
#: snippet kind -> the `AGI` call it holds
KINDS = {"install": "AGI.install", "distrib": "AGI.get_distrib", "run": "AGI.run"}
_WIDTH = 100


def _literal(name: str, value: Any, indent: int) -> str:
    """``name=value,`` as Python source at ``indent``, long values wrapped (pprint)."""
    prefix = " " * indent + f"{name}="
    text = pprint.pformat(value, width=max(40, _WIDTH - len(prefix)), sort_dicts=False)
    return prefix + text.replace("\n", "\n" + " " * len(prefix)) + ","


def _apps_path(request: RunRequest, env: AgiEnv) -> list[str] | None:
    """The apps folders the snippet names: the explicit ones, else the app's folder when it was
    found in ``./apps`` (relative to where `agi` ran); None for the bundled examples."""
    from ..env import BUNDLED_APPS  # the one folder that is found from any directory

    if request.apps_path is not None:
        return [str(Path(p).absolute()) for p in request.apps_path]
    folder = env.project_dir.parent.absolute()
    return None if folder.resolve() == BUNDLED_APPS.resolve() else [str(folder)]


def _worker_map(request: RunRequest) -> dict[str, Any]:
    """The worker map as written in settings: ``host: count``, or the full spec when it says more."""
    workers: dict[str, Any] = {}
    for host, spec in request.cluster.workers.items():
        data = spec.model_dump(mode="json")
        plain = data.get("capacity") == 1.0 and not data.get("capabilities") and data.get("gpus") is None and not data.get("env")
        workers[str(host)] = data["count"] if plain else data
    return workers


def _share(path: str | None) -> str | None:
    if not path or path.startswith("~") or os.path.isabs(path):
        return path
    return os.path.abspath(path)


def regenerate_command(kind: str, app: str, *, apps_path: Sequence[str] | None = None, mode: str | None = None,
                       assignments: Sequence[str] = (), no_cache: bool = False) -> str:
    """The `agi snippet` command line that makes this snippet again.

    >>> regenerate_command("run", "toy", apps_path=["/a b"], mode="p", assignments=["n=4"])
    "agi snippet toy run --apps-path '/a b' --mode p --set n=4"
    """
    words = ["agi", "snippet", app, kind]
    for path in apps_path or ():
        words += ["--apps-path", path]
    if mode is not None:
        words += ["--mode", str(mode)]
    for assignment in assignments:
        words += ["--set", assignment]
    if no_cache:
        words.append("--no-cache")
    return shlex.join(words)


def render_snippet(kind: str, request: RunRequest, env: AgiEnv, *, assignments: Sequence[str] = (),
                   mode: str | int | None = None, generated: datetime | None = None) -> str:
    """The Python script of ``kind`` (install, distrib or run) for ``request`` (from `resolve()`).

    ``assignments`` are the ``--set`` overrides and ``mode`` the ``--mode`` the request was
    resolved with: the script checks the settings hash with the same overrides (`check_snippet`)
    and its header says how to regenerate it. ``generated`` defaults to now (UTC).
    """
    if kind not in KINDS:
        raise SettingsError(f"unknown snippet kind {kind!r}", fix=f"use one of: {', '.join(KINDS)}")
    set_args, set_cluster = assignments_to_overrides(list(assignments))
    overrides: dict[str, Any] = {"args": set_args, "cluster": set_cluster}
    apps_path = _apps_path(request, env)
    regenerate = regenerate_command(kind, request.app, apps_path=apps_path, mode=None if mode is None else str(mode),
                                    assignments=assignments, no_cache=kind == "run" and not request.use_cache)
    stamp = (generated or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_mode = Mode(request.mode)

    # the call's cluster= mapping: the --set cluster keys, and the share (scheduler and workers are keywords)
    cluster = {k: v for k, v in set_cluster.items() if k not in ("scheduler", "workers", "workers_data_path")}
    share = _share(request.cluster.workers_data_path)
    if share:
        cluster["workers_data_path"] = share

    env_line = f"    env = AgiEnv(app={request.app!r}" + (")" if apps_path is None else f", apps_path={apps_path!r})")
    call = [_literal("scheduler", request.cluster.scheduler, 8), _literal("workers", _worker_map(request), 8)]
    mode_line = f"        {'modes_enabled' if kind == 'install' else 'mode'}={int(run_mode)},  # {run_mode.letters or '-'}"
    call.append(mode_line)
    if kind != "install":
        call.append(_literal("args", request.args, 8))
    if cluster:
        call.append(_literal("cluster", cluster, 8))
    if kind == "run":
        if request.plan_file:
            call.append(_literal("plan", str(Path(request.plan_file).absolute()), 8))
        call.append(_literal("use_cache", request.use_cache, 8))
        if request.refresh:
            call.append(_literal("refresh", list(request.refresh), 8))

    body = {
        "run": [
            "    result = await AGI.run(",
            "        env,", *call, "    )",
            "    value = repr(result.value)",
            '    print(f"status: {result.status}")',
            '    print(f"run id: {result.run_id}")',
            '    print(f"value: {value if len(value) <= 200 else value[:200] + \'...\'}")',
            '    print(f"record: {result.manifest}")',
            '    return 0 if result.status == "ok" else 1',
        ],
        "distrib": [
            "    plan = await AGI.get_distrib(",
            "        env,", *call, "    )",
            '    print(f"fingerprint: {plan.fingerprint}")',
            '    print(f"partitions: {len(plan.partitions)}")',
            '    print(f"slots: {len(plan.slots)}")',
            "    return 0",
        ],
        "install": [
            "    from agi_core.install import InstallError",
            "",
            "    try:",
            "        report = await AGI.install(",
            "            env,", *["    " + line for line in call], "        )",
            "    except InstallError as exc:",
            "        report = exc.report",
            "    for host in report.hosts:",
            '        note = host.cause if host.status == "failed" else host.detail',
            '        print(f"{host.host}: {host.status}" + (f"  {note}" if note else ""))',
            "    return 1 if report.failed else 0",
        ],
    }[kind]

    lines = [
        f"# {SNIPPET_API}  kind={kind}  app={request.app}",
        f"# {KINDS[kind]} with the settings of {request.settings_file}",
        f"# settings hash: {request.settings_hash}",
        f"# generated: {stamp}  by: {regenerate}",
        '"""Generated by `agi snippet`: run it with `python THIS_FILE` from any directory, or paste it',
        "into a Jupyter cell (or `%run THIS_FILE` there): it runs unchanged in both (docs/notebooks.md).",
        "",
        "It warns when the app's settings changed since it was generated (an error, before anything",
        'runs, with AGI_STRICT_SNIPPETS=1); regenerate it with the command above."""',
        "",
        "from __future__ import annotations",
        "",
        "from agi_core import AGI, AgiEnv",
        "from agi_core.snippets import check_snippet, run_snippet",
        "",
        f"API = {SNIPPET_API!r}",
        f"SETTINGS_HASH = {request.settings_hash!r}",
        "# the overrides (--set) this snippet was generated with: SETTINGS_HASH is the hash of the",
        "# settings file and profile with these applied, whatever values the call below pins",
        "OVERRIDES = " + pprint.pformat(overrides, width=_WIDTH - 12, sort_dicts=False).replace("\n", "\n" + " " * 12),
        f"REGENERATE = {regenerate!r}",
        "",
        "",
        "async def main() -> int:",
        env_line,
        "    check_snippet(env, SETTINGS_HASH, api=API, overrides=OVERRIDES, regenerate=REGENERATE)",
        *body,
        "",
        "",
        "# Dask's worker processes import a script again: the guard keeps them from running it. In a",
        "# notebook cell __name__ is \"__main__\" too, and run_snippet runs main() beside the kernel's loop.",
        'if __name__ == "__main__":',
        "    run_snippet(main)",
    ]
    return "\n".join(lines) + "\n"
