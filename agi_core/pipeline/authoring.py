"""Make, refresh and judge steps: a snippet step from today's settings, a python step from a file,
and whether a step is stale (its settings, its snippet API or its source file changed).

>>> step = snippet_step("render", "run", "mandelbrot", mode="p", assignments=["bands=4"])
>>> step.kind, step.app, step.set, step.code.startswith("# agi.snippet.v1  kind=run  app=mandelbrot")
('run', 'mandelbrot', ['bands=4'], True)
>>> staleness(step) is None
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import AgiError
from .model import AGI_KINDS, Step, check_step_id

if TYPE_CHECKING:
    from ..run import RunRequest

__all__ = ["python_step", "refreshed", "snippet_step", "staleness"]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _env(app: str, apps_path: Sequence[str] | None):  # -> AgiEnv
    from ..app.env import AgiEnv

    return AgiEnv(app=app, apps_path=[Path(p) for p in apps_path] if apps_path else None)


def snippet_step(step_id: str, kind: str, app: str, *, apps_path: Sequence[str | Path] | None = None,
                 mode: str | None = None, assignments: Sequence[str] = (), no_cache: bool = False,
                 description: str = "", deps: Sequence[str] = ()) -> Step:
    """A step holding the snippet `agi snippet APP KIND` prints with these options, today."""
    from ..run import resolve
    from ..settings import assignments_to_overrides
    from ..snippets import SNIPPET_API, render_snippet

    if kind not in AGI_KINDS:
        raise AgiError(f"unknown step kind {kind!r}", fix=f"use one of: {', '.join(AGI_KINDS)} (or `agi steps add-python FILE`)")
    check_step_id(step_id)
    paths = [str(Path(p).absolute()) for p in apps_path] if apps_path else None
    env = _env(app, paths)
    args, cluster = assignments_to_overrides(list(assignments))
    request = resolve(env, mode=mode, args=args, cluster=cluster or None, use_cache=not no_cache)
    code = render_snippet(kind, request, env, assignments=assignments, mode=mode)
    return Step(id=step_id, kind=kind, app=app, apps_path=paths, mode=None if mode is None else str(mode),
                set=list(assignments), no_cache=no_cache, settings_hash=request.settings_hash,
                settings_values=settings_values(request), snippet_api=SNIPPET_API,
                generated=_now(), code=code, description=description or f"{kind} {app}", deps=list(deps))


def settings_values(request: RunRequest) -> dict[str, str]:
    """A request's args and cluster settings by dotted key, each value as JSON text (TOML has no
    null): ``{"args.width": "800", "cluster.scheduler": "null", ...}``."""
    flat: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for name, inner in value.items():
                walk(inner, f"{key}.{name}")
        else:
            flat[key] = json.dumps(value, sort_keys=True)

    walk({"args": request.args, "cluster": request.cluster.model_dump(mode="json")}, "")
    return {key.removeprefix("."): value for key, value in flat.items()}


def _settings_changes(before: dict[str, str], after: dict[str, str], limit: int = 3) -> str:
    changed = [f"{key} was {before.get(key, '<absent>')}, is now {after.get(key, '<absent>')}"
               for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    return "; ".join(changed[:limit]) + (f"; and {len(changed) - limit} more" if len(changed) > limit else "")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def python_step(step_id: str, file: Path, *, description: str = "", deps: Sequence[str] = ()) -> Step:
    """A step that runs the Python in ``file`` (copied into the pipeline; `refreshed` copies it again)."""
    check_step_id(step_id)
    file = Path(file)
    try:
        code = file.read_text()
    except OSError as exc:
        raise AgiError(f"cannot read {file}: {exc.strerror}", fix="give an existing Python file") from None
    try:
        compile(code, str(file), "exec")
    except SyntaxError as exc:
        raise AgiError(f"{file}:{exc.lineno}: not valid Python: {exc.msg}", fix="fix the file, then add it again") from None
    return Step(id=step_id, kind="python", source=str(file.absolute()), source_sha256=_sha256(file), generated=_now(),
                code=code, description=description or f"python {file.name}", deps=list(deps))


def staleness(step: Step) -> str | None:
    """Why ``step`` is stale, or None when it is not: a snippet whose app settings or snippet API
    changed since it was generated, or a python step whose source file changed since it was copied."""
    from ..snippets import SNIPPET_API

    if step.is_snippet:
        if step.snippet_api != SNIPPET_API:
            return f"snippet API {step.snippet_api or 'unknown'} is not {SNIPPET_API}"
        if step.app is None or step.settings_hash is None:
            return "no app or settings hash recorded"
        from ..run import resolve
        from ..settings import assignments_to_overrides

        args, cluster = assignments_to_overrides(list(step.set))
        try:
            request = resolve(_env(step.app, step.apps_path), args=args, cluster=cluster or None)
        except AgiError as exc:
            return f"its settings no longer resolve: {exc.message}"
        if request.settings_hash != step.settings_hash:
            which = _settings_changes(step.settings_values, settings_values(request)) if step.settings_values else ""
            return f"settings changed since it was generated ({request.settings_file})" + (f": {which}" if which else "")
        return None
    if step.source and step.source_sha256:
        source = Path(step.source)
        if not source.exists():
            return None  # the copy in the pipeline is what runs; a moved source is not a change
        if _sha256(source) != step.source_sha256:
            return f"{source} changed since it was copied"
    return None


def refreshed(step: Step) -> Step:
    """``step`` generated again from today's settings (or re-read from its source file), keeping its
    id, description and deps."""
    if step.is_snippet:
        assert step.app is not None
        new = snippet_step(step.id, step.kind, step.app, apps_path=step.apps_path, mode=step.mode, assignments=step.set,
                           no_cache=step.no_cache, description=step.description, deps=step.deps)
        return new.model_copy(update={"origin": step.origin})
    if step.source:
        source = Path(step.source)
        if not source.exists():
            raise AgiError(f"step {step.id!r}: its source {source} is gone", fix="add the file again with `agi steps add-python`")
        return python_step(step.id, source, description=step.description, deps=step.deps).model_copy(update={"origin": step.origin})
    return step
