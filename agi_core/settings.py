"""App settings: ``app_settings.toml`` validated by pydantic, merged with profiles and call arguments.

Precedence, highest first: call arguments > the app's ``app_settings.toml`` > the profile it names
(``[cluster] profile = "NAME"`` reads ``settings/NAME.toml``) > built-in defaults.

The ``[cluster]`` models live in `agi_core.settings_schema` (re-exported here). Every value is checked
when read, whatever the mode; an error names the file, the dotted key, what was expected and found.

>>> doc = {"args": {}, "cluster": {"pool": True, "workers": {"127.0.0.1": 2}}}
>>> ClusterSettings.model_validate(doc["cluster"]).workers["127.0.0.1"].count
2
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import paths
from .atomic import replacing
from .errors import AgiError, SettingsError
from .secret_refs import SecretError, is_reference
from .settings_schema import CacheSettings, ClusterSettings, DaskSettings, InstallSettings, SshSettings, WorkerSpec

_Table = TypeVar("_Table", bound=BaseModel)

__all__ = [
    "CacheSettings",
    "ClusterSettings",
    "DaskSettings",
    "InstallSettings",
    "Settings",
    "SshSettings",
    "WorkerSpec",
    "call_overrides",
    "load_settings",
    "parse_assignment",
    "save_settings_values",
]


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one app: validated ``args`` and ``cluster``, and where they came from."""

    path: Path
    args: BaseModel
    cluster: ClusterSettings
    document: dict[str, Any] = field(repr=False)
    cache: CacheSettings = field(default_factory=CacheSettings)

    @property
    def share(self) -> Path:
        return Path(self.cluster.workers_data_path).expanduser() if self.cluster.workers_data_path else paths.default_share()

    def as_dict(self) -> dict[str, Any]:
        return {"args": self.args.model_dump(mode="json"), "cluster": self.cluster.model_dump(mode="json"),
                "cache": self.cache.model_dump(mode="json")}

    @property
    def hash(self) -> str:
        """SHA-256 of the args and the cluster settings: what makes a pipeline step stale. The
        ``[cache]`` table is left out: it changes how results are reused, never what they are."""
        data = self.as_dict()
        del data["cache"]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# reading


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error names the file, line and column."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"{path}: file not found", fix=f"create {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}", fix="fix the syntax at the line shown") from None


def _describe(value: Any) -> str:
    import datetime as dt

    if isinstance(value, dt.date | dt.time):  # what TOML made of an unquoted 2024-01-01
        return f"{value.isoformat()} (a TOML {type(value).__name__}, not text)"
    text = repr(value)
    return f"{text[:60]}… ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def _dotted(parts: list[str]) -> str:
    """A TOML dotted key, quoting the parts that need it: ``cluster.workers."10.0.0.2".count``."""
    return ".".join(part if part.replace("_", "a").replace("-", "a").isalnum() else json.dumps(part) for part in parts)


#: how pydantic names the branch of a union in an error's location: ``bool``, ``literal['require']``,
#: ``function-after[...]``, ``list[str]``; never a settings key
_UNION_BRANCH = re.compile(r"(bool|int|float|str|bytes|none|list|dict|tuple|set)(\[.*\])?|[a-z][a-z-]*\[.*\]")


def _format_validation(exc: ValidationError, *, origin: str, prefix: str, model: type[BaseModel] | None = None) -> SettingsError:
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
        key = _dotted(full)
        where = _with_line(origin, full)
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "extra_forbidden":
            lines[key] = f"{where}: unknown key '{key}'"
            close = difflib.get_close_matches(parts[-1], _known_keys(model or type(None), parts[:-1]), n=1) if parts else []
            if close:
                fixes.append(f"did you mean '{_dotted([*full[:-1], close[0]])}'?")
            elif full[:1] == ["cluster"] and len(parts) == 1 and isinstance(error["input"], Mapping):
                fixes.append(f"[{key}] is the table of a cluster backend named '{parts[0]}' only when a package that "
                             "provides it is installed (entry-point group agi_core.backends): install it, or remove the table")
        elif error["type"] == "missing":
            lines[key] = f"{where}: missing key '{key}'"
        else:
            what = str(cause) if error["type"] == "value_error" and cause is not None else error["msg"].lower()
            # a refused secret is never repeated: the message may be printed, logged or pasted
            found = "" if isinstance(cause, SecretError) else f", found {_describe(error['input'])}"
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


def _with_line(origin: str, parts: list[str]) -> str:
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


def _validate_table(model: type[_Table], name: str, data: Any, origin: str) -> _Table:
    """The ``[name]`` table of ``origin`` as ``model``; every problem names the file and the key."""
    if not isinstance(data, Mapping):
        raise SettingsError(f"{origin}: [{name}] must be a table, found {_describe(data)}", fix=f"make it a [{name}] table")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _format_validation(exc, origin=origin, prefix=name, model=model) from None


def _validate_cluster(data: Any, origin: str) -> ClusterSettings:
    return _validate_table(ClusterSettings, "cluster", data, origin)


def _validate_args(model: type[BaseModel], values: Mapping[str, Any], origins: Mapping[str, str]) -> BaseModel:
    known = set(model.model_fields)
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SettingsError(
                f"{_with_line(origins[key], ['args', key])}: unknown argument 'args.{key}'",
                fix=f"{hint}known arguments: {', '.join(sorted(known)) or '(none)'}",
            )
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        origin = origins.get(key, "defaults")
        raise _format_validation(exc, origin=origin, prefix="args", model=model) from None


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; the worker map is replaced, never merged (a map names the whole cluster),
    and so is a secret's reference (``{env = ...}`` over ``{file = ...}`` names one place, not two)."""
    merged = dict(base)
    for key, value in top.items():
        if (key != "workers" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
                and not is_reference(value)):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_profile(name: str, profile_dirs: list[Path], named_in: Path) -> dict[str, Any]:
    for folder in profile_dirs:
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            document = read_toml(candidate)
            cluster = document.get("cluster", {})
            _validate_cluster(cluster, str(candidate))
            if "profile" in cluster:
                raise SettingsError(f"{candidate}: a profile cannot name another profile ([cluster] profile)",
                                    fix="remove the key 'cluster.profile' from the profile")
            return cluster
    known = sorted({p.stem for folder in profile_dirs if folder.is_dir() for p in folder.glob("*.toml")})
    where = ", ".join(str(folder) for folder in profile_dirs) or "(no settings folder)"
    raise SettingsError(
        f"{named_in}: key 'cluster.profile': no profile named '{name}' in {where}",
        fix=f"use one of: {', '.join(known)}" if known else f"create {profile_dirs[0] / (name + '.toml')}" if profile_dirs else "remove the key",
    )


def load_settings(
    path: Path,
    args_model: type[BaseModel],
    *,
    profile_dirs: list[Path] = (),  # type: ignore[assignment]
    args: Mapping[str, Any] | None = None,
    cluster: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve an app's settings: defaults < profile < ``path`` < ``args``/``cluster`` call overrides."""
    document = read_toml(path) if path.exists() else {}
    origin = str(path)
    file_args = document.get("args", {})
    if not isinstance(file_args, Mapping):
        raise SettingsError(f"{origin}: [args] must be a table, found {_describe(file_args)}", fix="make it an [args] table")
    file_cluster = document.get("cluster", {})
    _validate_cluster(file_cluster, origin)

    layers: dict[str, Any] = {}
    profile = (cluster or {}).get("profile") or file_cluster.get("profile")
    if profile:
        layers = _read_profile(profile, list(profile_dirs), path)
    layers = _merge(layers, file_cluster)
    if cluster:
        layers = _merge(layers, cluster)
    resolved_cluster = _validate_cluster(layers, "call arguments" if cluster else origin)
    resolved_cache = _validate_table(CacheSettings, "cache", document.get("cache", {}), origin)

    call_args = dict(args or {})
    origins = {key: origin for key in file_args} | {key: "call arguments" for key in call_args}
    resolved_args = _validate_args(args_model, {**file_args, **call_args}, origins)
    return Settings(path=path, args=resolved_args, cluster=resolved_cluster, document=document, cache=resolved_cache)


# ---------------------------------------------------------------------------------------------
# writing


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """Parse ``key=value`` from the command line: a dotted key, a TOML value (else a plain string).

    A key without a table (``width=800``) means ``args.width``.

    >>> parse_assignment("width=800")
    (['args', 'width'], 800)
    >>> parse_assignment('cluster.workers."127.0.0.1"=2')
    (['cluster', 'workers', '127.0.0.1'], 2)
    >>> parse_assignment("cluster.scheduler=10.0.0.1:8786")
    (['cluster', 'scheduler'], '10.0.0.1:8786')
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"invalid assignment {text!r}: expected KEY=VALUE", fix="write e.g. --set width=800 or --set cluster.pool=true")
    try:
        # Let the TOML parser split the dotted key, so quoted parts ("10.0.0.2") stay whole.
        node: Any = tomllib.loads(f"{key.strip()} = 0")
        path: list[str] = []
        while isinstance(node, dict):
            (name,) = node.keys()
            path.append(name)
            node = node[name]
    except (tomllib.TOMLDecodeError, ValueError):
        raise SettingsError(f"invalid key {key!r} in {text!r}", fix='use a dotted key, quoting parts with dots: cluster.workers."10.0.0.2"=2') from None
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    if len(path) == 1:
        path = ["args", *path]
    if path[0] not in ("args", "cluster", "cache"):
        raise SettingsError(f"invalid key {key!r}: settings live under 'args', 'cluster' or 'cache'",
                            fix=f"write args.{key}, cluster.{key} or cache.{key}")
    return path, value


def call_overrides(scheduler: str | None, workers: Mapping[str, Any] | None, cluster: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``[cluster]`` overrides of a call: its ``cluster=`` mapping plus ``scheduler=`` and ``workers=``."""
    overrides = dict(cluster or {})
    if scheduler is not None:
        overrides["scheduler"] = scheduler
    if workers is not None:
        overrides["workers"] = dict(workers)
    return overrides or None


def assignments_to_overrides(assignments: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Turn ``--set`` assignments into (args, cluster) override mappings."""
    tables: dict[str, dict[str, Any]] = {"args": {}, "cluster": {}}
    for text in assignments:
        path, value = parse_assignment(text)
        if path[0] not in tables:
            raise SettingsError(f"--set {text}: the [{path[0]}] table is not a per-run setting",
                                fix=f"save it in app_settings.toml with `agi settings APP --set {text}`"
                                    + (", or give `agi run --audit FRACTION`" if path[:2] == ["cache", "audit"] else ""))
        node = tables[path[0]]
        for part in path[1:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tables["args"], tables["cluster"]


def save_settings_values(path: Path, assignments: list[str], args_model: type[BaseModel], profile_dirs: list[Path]) -> Settings:
    """Apply ``key=value`` assignments to ``path``, keeping comments and unknown tables.

    The new file is validated before it replaces the old one; on any error nothing is written.
    """
    import tomlkit  # only needed when writing

    text = path.read_text() if path.exists() else ""
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}", fix="fix the syntax at the line shown") from None
    for assignment in assignments:
        keys, value = parse_assignment(assignment)
        node: Any = document
        for part in keys[:-1]:
            if part not in node:
                node[part] = tomlkit.table()
            node = node[part]
            if not isinstance(node, Mapping):
                raise SettingsError(f"{path}: key '{'.'.join(keys)}': '{part}' is not a table", fix="choose another key")
        node[keys[-1]] = value
    new_text = tomlkit.dumps(document)
    # checked before the temporary file is written, so a secret typed as text never reaches the disk
    _validate_cluster(tomllib.loads(new_text).get("cluster", {}), str(path))
    with replacing(path) as tmp:  # checked as a file before it replaces the settings
        tmp.write_text(new_text)
        try:
            settings = load_settings(tmp, args_model, profile_dirs=profile_dirs)
        except SettingsError as exc:
            raise SettingsError(str(exc).replace(str(tmp), str(path)), fix=exc.fix) from None
    return Settings(path=path, args=settings.args, cluster=settings.cluster, document=settings.document, cache=settings.cache)
