"""How a settings problem is worded: pydantic's validation error turned into one `SettingsError` that
names the file, the line, the dotted key, what was expected and found, and the close matches of an
unknown key (`format_validation`).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..base.errors import AgiError, SettingsError
from .secret_refs import SecretError

__all__ = ["describe_value", "dotted_key", "format_validation", "with_line"]


def describe_value(value: Any) -> str:
    import datetime as dt

    if isinstance(value, dt.date | dt.time):  # what TOML made of an unquoted 2024-01-01
        return f"{value.isoformat()} (a TOML {type(value).__name__}, not text)"
    text = repr(value)
    return f"{text[:60]}… ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def dotted_key(parts: list[str]) -> str:
    """A TOML dotted key, quoting the parts that need it: ``cluster.workers."10.0.0.2".count``."""
    return ".".join(part if part.replace("_", "a").replace("-", "a").isalnum() else json.dumps(part) for part in parts)


#: how pydantic names the branch of a union in an error's location: ``bool``, ``literal['require']``,
#: ``function-after[...]``, ``list[str]``; never a settings key
_UNION_BRANCH = re.compile(r"(bool|int|float|str|bytes|none|list|dict|tuple|set)(\[.*\])?|[a-z][a-z-]*\[.*\]")


def format_validation(exc: ValidationError, *, origin: str, prefix: str, model: type[BaseModel] | None = None) -> SettingsError:
    """One line per invalid value, naming the file (and the key's line in it), the key, what was
    expected and what was found.

    A validator's own error (a `ValueError`, e.g. `HostAddressError`) is quoted as written, and
    its fix (e.g. the accepted host forms) joins the error's fix; an unknown key of ``model`` gets
    the closest known one; a quoted boolean or an unquoted date, how to write it.
    """
    lines: dict[str, str] = {}  # key → its line; a union's branches (one error each) share one line
    fixes: list[str] = []
    for error in exc.errors():
        # pydantic marks a mapping key (not its value) as the failing part with "[key]", and each
        # branch of a union (`bool | Literal["require"]`) with the branch's type: neither is a key
        parts = [str(part) for part in error["loc"] if part != "[key]" and not _UNION_BRANCH.fullmatch(str(part))]
        full = [prefix, *parts] if prefix else parts
        key = dotted_key(full)
        where = with_line(origin, full)
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "extra_forbidden":
            lines[key] = f"{where}: unknown key '{key}'"
            import difflib  # only for a did-you-mean: not on every run's path

            close = difflib.get_close_matches(parts[-1], _known_keys(model or type(None), parts[:-1]), n=1) if parts else []
            if close:
                fixes.append(f"did you mean '{dotted_key([*full[:-1], close[0]])}'?")
            elif full[:1] == ["cluster"] and len(parts) == 1 and isinstance(error["input"], Mapping):
                fixes.append(f"[{key}] is the table of a cluster backend named '{parts[0]}' only when a package that "
                             "provides it is installed (entry-point group agi_core.backends): install it, or remove the table")
        elif error["type"] == "missing":
            lines[key] = f"{where}: missing key '{key}'"
        else:
            what = str(cause) if error["type"] == "value_error" and cause is not None else error["msg"].lower()
            # a refused secret is never repeated: the message may be printed, logged or pasted
            found = "" if isinstance(cause, SecretError) else f", found {describe_value(error['input'])}"
            lines[key] = (lines[key].removesuffix(found) + f", or {what}{found}" if key in lines
                          else f"{where}: key '{key}': {what}{found}")
            hint = _value_hint(error, full)
            if hint and hint not in fixes:
                fixes.append(hint)
        if isinstance(cause, AgiError) and cause.fix and cause.fix not in fixes:
            fixes.append(cause.fix.replace("KEY = ", f"{key} = ") if isinstance(cause, SecretError) else cause.fix)
    return SettingsError("\n".join(lines.values()), fix="correct the key(s) named above" + (": " + "; ".join(fixes) if fixes else ""))


def _known_keys(model: type[BaseModel], parts: list[str]) -> list[str]:
    """The keys a table at ``parts`` below ``model`` accepts (``[]`` when that is no known table).

    >>> from agi_core.settings.schema import ClusterSettings
    >>> "pool" in _known_keys(ClusterSettings, []), "scheduler_port" in _known_keys(ClusterSettings, ["dask"])
    (True, True)
    >>> "count" in _known_keys(ClusterSettings, ["workers", "10.0.0.2"])
    True
    >>> "memory" in _known_keys(ClusterSettings, ["slurm"])
    True
    """
    import typing

    current: Any = model
    index = 0
    while index < len(parts):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        if parts[index] not in current.model_fields:
            # a backend's own table, ``[cluster.<name>]`` (`ClusterSettings.backend_options_model`)
            options = getattr(current, "backend_options_model", lambda name: None)(parts[index])
            if options is None:
                return []
            current, index = options, index + 1
            continue
        annotation = current.model_fields[parts[index]].annotation
        inner = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            return []
        current = inner[0]
        # a mapping of tables (the worker map): the next part is its key (a host), not a field
        index += 2 if typing.get_origin(annotation) in (dict, Mapping) else 1
    return sorted(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def with_line(origin: str, parts: list[str]) -> str:
    """``origin`` with the line of the dotted key ``parts`` in it (``FILE:LINE``) when it is a file
    that holds that key, else ``origin`` as it is (call arguments, a key only a default has)."""
    path = Path(origin)
    try:
        text = path.read_text() if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return origin
    line = _key_line(text, parts)
    return f"{origin}:{line}" if line else origin


def _key_line(text: str, parts: list[str]) -> int | None:
    r"""The line number of the key ``parts`` (or of its table) in TOML ``text``.

    >>> _key_line("[args]\nwidth = 1\n[cluster]\npool = true\n[cluster.dask]\nport = 1\n", ["cluster", "dask", "port"])
    6
    >>> _key_line('[cluster.workers."10.0.0.2"]\ncount = 2\n', ["cluster", "workers", "10.0.0.2", "count"])
    2
    """
    table: list[str] = []
    best: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith(("'", '"')) else raw.strip()
        if line.startswith("["):
            table = _key_parts(line.strip("[] "))
            if table == parts:
                best = number
            continue
        key, sep, _ = line.partition("=")
        if sep and table + _key_parts(key) == parts:
            return number
        if sep and best is None and parts[: len(table) + len(_key_parts(key))] == table + _key_parts(key):
            best = number  # an inline table holding the key: its line
    return best


def _key_parts(key: str) -> list[str]:
    """A TOML dotted key as its parts, quotes removed (``workers."10.0.0.2"`` → two parts)."""
    try:
        node: Any = tomllib.loads(f"{key.strip()} = 0")
    except tomllib.TOMLDecodeError:
        return [key.strip()]
    found: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        (name,) = node.keys()
        found.append(name)
        node = node[name]
    return found


def _value_hint(error: Any, parts: list[str]) -> str | None:
    """How to write a value TOML read differently than meant: a quoted boolean, an unquoted date."""
    import datetime as dt

    value = error.get("input")
    key = ".".join(parts[1:]) if parts[:1] == ["args"] else ".".join(parts)
    if error["type"] == "bool_type":
        return f"write a TOML boolean, unquoted: {key} = true (or false); --set {key}=true"
    if isinstance(value, dt.date | dt.time):
        return (f"{value.isoformat()} reads as a TOML {type(value).__name__}: quote it for text: "
                f"{key} = \"{value.isoformat()}\" in the file, --set '{key}=\"{value.isoformat()}\"' on the command line")
    return None
