"""App settings: ``app_settings.toml`` validated by pydantic, merged with profiles and call arguments.

Precedence, highest first: call arguments > the app's ``app_settings.toml`` > the profile it names
(``[cluster] profile = "NAME"`` reads ``settings/NAME.toml``) > built-in defaults.

The ``[cluster]`` models live in `agi_core.settings.schema` (re-exported here). Every value is checked
when read, whatever the mode; an error names the file, the dotted key, what was expected and found.

>>> doc = {"args": {}, "cluster": {"pool": True, "workers": {"127.0.0.1": 2}}}
>>> ClusterSettings.model_validate(doc["cluster"]).workers["127.0.0.1"].count
2
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..base import paths
from ..base.atomic import replacing
from ..base.errors import SettingsError
from .assignments import assignments_to_overrides, call_overrides, parse_assignment
from .schema import CacheSettings, ClusterSettings, DaskSettings, InstallSettings, SshSettings, WorkerSpec
from .secret_refs import is_reference
from .wording import describe_value, format_validation, with_line

_Table = TypeVar("_Table", bound=BaseModel)

__all__ = [
    "CacheSettings",
    "ClusterSettings",
    "DaskSettings",
    "InstallSettings",
    "Settings",
    "SshSettings",
    "WorkerSpec",
    "assignments_to_overrides",
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


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error names the file, line and column."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"{path}: file not found", fix=f"create {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}", fix="fix the syntax at the line shown") from None


def _validate_table(model: type[_Table], name: str, data: Any, origin: str) -> _Table:
    """The ``[name]`` table of ``origin`` as ``model``; every problem names the file and the key."""
    if not isinstance(data, Mapping):
        raise SettingsError(f"{origin}: [{name}] must be a table, found {describe_value(data)}", fix=f"make it a [{name}] table")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_validation(exc, origin=origin, prefix=name, model=model) from None


def _validate_cluster(data: Any, origin: str) -> ClusterSettings:
    return _validate_table(ClusterSettings, "cluster", data, origin)


def _validate_args(model: type[BaseModel], values: Mapping[str, Any], origins: Mapping[str, str]) -> BaseModel:
    known = set(model.model_fields)
    for key in values:
        if key not in known:
            import difflib  # only for a did-you-mean: not on every run's path

            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SettingsError(
                f"{with_line(origins[key], ['args', key])}: unknown argument 'args.{key}'",
                fix=f"{hint}known arguments: {', '.join(sorted(known)) or '(none)'}",
            )
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        origin = origins.get(key, "defaults")
        raise format_validation(exc, origin=origin, prefix="args", model=model) from None


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
        raise SettingsError(f"{origin}: [args] must be a table, found {describe_value(file_args)}", fix="make it an [args] table")
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
