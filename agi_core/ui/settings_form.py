"""The settings editor's form: fields from the app's ``Args`` model (its JSON schema) and from the
cluster settings, each with its value and where it came from; saving writes ``app_settings.toml``
through `save_settings_values` (comments and unknown tables kept, nothing written on an error)."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..app.env import AgiEnv
from ..base.errors import SettingsError
from ..kernels.kinds import setting_keys
from ..settings.loading import read_toml, save_settings_values
from ..settings.secret_refs import Secret

__all__ = ["Field", "SaveOutcome", "backend_fields", "cluster_fields", "form_fields", "save_form", "worker_rows"]

#: the cluster keys the form edits, in order, with their labels; each one's input kind and help
#: come from the settings model (`ClusterSettings`' JSON schema: its type and description)
CLUSTER_KEYS: dict[str, str] = {
    "cluster.pool": "pool", "cluster.cython": "cython",  # kernel keys: `kernel_kinds.setting_keys`
    "cluster.cluster_enabled": "cluster", "cluster.rapids": "rapids", "cluster.scheduler": "scheduler",
    "cluster.workers_data_path": "share", "cluster.ssh.user": "SSH user", "cluster.ssh.key": "SSH key",
    "cluster.ssh.key_passphrase": "SSH key passphrase", "cluster.ssh.port": "SSH port", "cluster.install.python": "Python",
    "cluster.install.source": "packages from", "cluster.dask.dashboard_port": "dashboard port",
}
#: inputs the schema's type does not say: the mode's bits are toggles, rapids also takes "require",
#: a passphrase is a reference to where it is kept (never the passphrase itself)
_SHOWN_AS = {"cluster.pool": "toggle", "cluster.cython": "toggle", "cluster.cluster_enabled": "toggle", "cluster.rapids": "rapids",
             "cluster.ssh.key_passphrase": "secret"}
_SECRET_HELP = 'where it is kept: {env = "NAME"} or {file = "PATH"} (chmod 600); never the passphrase itself'


@dataclass
class Field:
    """One input of the form."""

    key: str  # dotted: args.n, cluster.pool
    label: str
    kind: str  # integer, number, boolean, toggle, rapids, text, json, secret, choice:a,b
    value: Any
    source: str  # call, app settings, profile NAME, default
    help: str = ""
    error: str | None = None

    @property
    def name(self) -> str:
        return self.key

    @property
    def text(self) -> str:
        """The value as the input shows it."""
        if self.value is None:
            return ""
        if self.kind == "json":
            return json.dumps(self.value)
        if self.kind == "secret":  # the reference ({env = "NAME"}): a Secret holds no value to show
            return Secret.parse(self.value).toml()
        return str(self.value)


def _lookup(table: Mapping[str, Any], dotted: list[str]) -> tuple[bool, Any]:
    node: Any = table
    for part in dotted:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _profile_cluster(env: AgiEnv, document: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    name = (document.get("cluster") or {}).get("profile")
    for folder in env.profile_dirs if name else ():
        path = folder / f"{name}.toml"
        if path.is_file():
            return name, read_toml(path).get("cluster", {})
    return name, {}


def _source(key: str, document: Mapping[str, Any], profile: tuple[str | None, Mapping[str, Any]]) -> str:
    parts = key.split(".")
    if _lookup(document, parts)[0]:
        return "app settings"
    if parts[0] == "cluster" and _lookup(profile[1], parts[1:])[0]:
        return f"profile {profile[0]}"
    return "default"


def _arg_kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if kind in ("integer", "number", "boolean"):
        return kind
    if kind == "string" and "enum" not in schema:
        return "text"
    if "enum" in schema:
        return "choice:" + ",".join(map(str, schema["enum"]))
    return "json"  # arrays, objects, unions: edited as JSON


def form_fields(env: AgiEnv) -> list[Field]:
    """The fields of the app's ``Args`` then the cluster keys, with today's values and sources."""
    settings = env.settings()
    document = settings.document
    profile = _profile_cluster(env, document)
    schema = env.app_class.Args.model_json_schema()
    values = settings.args.model_dump(mode="json")
    fields = [Field(f"args.{name}", name, _arg_kind(prop), values.get(name), _source(f"args.{name}", document, profile),
                    prop.get("description", ""))
              for name, prop in schema.get("properties", {}).items()]
    return fields + cluster_fields(settings.cluster.model_dump(mode="json"), document, profile) + backend_fields(settings.cluster, document, profile)


def _cluster_keys() -> dict[str, tuple[str, str, str]]:
    """`CLUSTER_KEYS` as (label, input kind, help), the kind and help from the settings model, and
    the kernel keys from the table of kernel kinds (`kernel_kinds.setting_keys`, read now)."""
    from ..settings.schema import ClusterSettings

    schema = ClusterSettings.model_json_schema()
    kernel_keys, keys = setting_keys(), {}
    for key, label in CLUSTER_KEYS.items():
        prop = _property(schema, key.split(".")[1:])
        choices = [branch for branch in prop.get("anyOf", []) if branch.get("type") != "null"]  # optional: its other branch
        kind = _SHOWN_AS.get(key) or _arg_kind(choices[0] if len(choices) == 1 else prop)
        help_text = _SECRET_HELP if kind == "secret" else str(prop.get("description", ""))
        keys[key] = kernel_keys.get(key, (label, kind, help_text))
        if key == "cluster.cython":
            keys["cluster.compiled"] = kernel_keys["cluster.compiled"]
    return keys


def _property(schema: Mapping[str, Any], path: list[str]) -> Mapping[str, Any]:
    """The JSON schema of the field at ``path`` (``["ssh", "port"]``), following ``$ref``s to the nested tables."""
    node: Mapping[str, Any] = schema
    for part in path:
        node = node.get("properties", {}).get(part, {})
        ref = node.get("$ref") or next((b["$ref"] for b in node.get("anyOf", []) + node.get("allOf", []) if "$ref" in b), None)
        if ref is not None and part != path[-1]:
            node = schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {})
    return node


def cluster_fields(cluster: Mapping[str, Any], document: Mapping[str, Any], profile: tuple[str | None, Mapping[str, Any]]) -> list[Field]:
    fields = []
    for key, (label, kind, help_text) in _cluster_keys().items():
        fields.append(Field(key, label, kind, _lookup(cluster, key.split(".")[1:])[1], _source(key, document, profile), help_text))
    return fields


def backend_fields(cluster: Any, document: Mapping[str, Any], profile: tuple[str | None, Mapping[str, Any]]) -> list[Field]:
    """The backend choice, then the selected backend's own options (``[cluster.<name>]``), from its
    options model's JSON schema (`ClusterBackend.Options`): a plugin's options appear without a
    change here. None when the backend cannot be loaded (the settings page shows that error)."""
    from ..base.errors import AgiError
    from ..cluster.registry import backend_class
    from ..settings.backend_plugins import backend_names

    name = cluster.backend
    fields = [Field("cluster.backend", "backend", "choice:" + ",".join(dict.fromkeys([name, *backend_names()])), name,
                    _source("cluster.backend", document, profile), "how the cluster's workers are started (docs/backends.md)")]
    try:
        backend = backend_class(name)
        values = backend.options_of(cluster).model_dump(mode="json")
    except AgiError:
        return fields
    if name in type(cluster).model_fields:  # a core table ([cluster.ssh]): the keys above edit it
        return fields
    for key, prop in backend.Options.model_json_schema().get("properties", {}).items():
        choices = [branch for branch in prop.get("anyOf", []) if branch.get("type") != "null"]  # optional: its other branch
        kind = _arg_kind(choices[0] if len(choices) == 1 else prop)
        dotted = f"cluster.{name}.{key}"
        fields.append(Field(dotted, f"{name}: {key}", kind, values.get(key), _source(dotted, document, profile), prop.get("description", "")))
    return fields


def worker_rows(env: AgiEnv) -> list[dict[str, Any]]:
    """The worker map as rows (host, count), as configured (empty: this machine, one slot per core)."""
    return [{"host": host, "count": spec.count} for host, spec in env.settings().cluster.workers.items()]


@dataclass
class SaveOutcome:
    """What saving the form did: the keys written, or the errors by key (and nothing written)."""

    saved: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""


def _toml_literal(value: Any) -> str:
    """``value`` as the right-hand side of ``KEY=VALUE``: a table is written inline (``{"h" = 3}``);
    ``tomlkit.item`` would give a table body (``"h" = 3``), which then reads as a string."""
    import tomlkit

    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        table.update({key: tomlkit.item(item) if not isinstance(item, Mapping) else tomlkit.parse(f"v = {_toml_literal(item)}")["v"]
                      for key, item in value.items()})
        return table.as_string()
    return tomlkit.item(value).as_string()


def _parse(field_: Field, raw: str | None) -> Any:
    """The typed value of an input (raises ValueError naming what was expected)."""
    if field_.kind in ("toggle", "boolean"):
        return raw in ("on", "true", "1")
    if field_.kind == "rapids":
        return {"on": True, "off": False, "require": "require"}.get(raw or "off", raw)
    text = (raw or "").strip()
    if text == "":
        return None
    if field_.kind in ("integer", "number"):
        try:  # given to the settings validator as typed, or as the text when it is no number (it names the key)
            return int(text) if field_.kind == "integer" else float(text)
        except ValueError:
            return text
    if field_.kind == "secret":  # refused here, so a secret typed as text never reaches a file
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        return Secret.parse(value).reference()  # a SecretError (a ValueError) names the fix, not the value
    if field_.kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from None
    return text


_KEY = re.compile(r"key '([^']+)'|(?:unknown|missing) (?:argument|key) '([^']+)'")


def _without_key(text: str, key: str) -> str:
    """The error without the key it is shown beside (``key 'args.n': …`` → ``…``)."""
    short = key.removeprefix("args.")
    for prefix in (f"key '{key}': ", f"key '{short}': ", f"{key}: ", f"argument '{short}': "):
        text = text.removeprefix(prefix)
    return text


def save_form(env: AgiEnv, form: Mapping[str, str], workers: list[tuple[str, str]] | None = None) -> SaveOutcome:
    """Write the values of ``form`` that differ from today's into ``app_settings.toml``.

    ``workers``: the worker-map rows (host, count); None leaves the map alone. An invalid value is
    reported against its key and nothing is written.
    """
    outcome = SaveOutcome()
    assignments: list[str] = []
    for field_ in form_fields(env):
        if field_.key not in form and field_.kind not in ("toggle", "boolean"):
            continue
        try:
            value = _parse(field_, form.get(field_.key))
        except ValueError as exc:
            outcome.errors[field_.key] = str(exc)
            continue
        if value != field_.value and value is not None:
            literal = Secret.parse(value).toml() if field_.kind == "secret" else _toml_literal(value)
            assignments.append(f"{field_.key}={literal}")
        elif value is None and field_.value is not None and field_.source == "app settings":
            outcome.errors[field_.key] = "a value is required here (remove the key from the file to use the default)"
    if workers is not None:
        rows: dict[str, Any] = {}
        for host, count in workers:
            if not host.strip():
                continue
            try:
                rows[host.strip()] = int(count)
            except ValueError:
                outcome.errors[f'cluster.workers."{host.strip()}"'] = f"count must be a whole number, found {count!r}"
        if rows != {h: s.count for h, s in env.settings().cluster.workers.items()}:
            assignments.append(f"cluster.workers={_toml_literal(rows)}")
    if outcome.errors or not assignments:
        outcome.message = "nothing to save" if not outcome.errors else "not saved: fix the values marked"
        return outcome
    try:
        save_settings_values(env.settings_file, assignments, env.app_class.Args, env.profile_dirs)
    except SettingsError as exc:
        for line in exc.message.splitlines():
            match = _KEY.search(line)
            key = next((g for g in match.groups() if g), "") if match else ""
            full = key if "." in key else f"args.{key}" if key else "_"
            outcome.errors[full] = _without_key(line.split(": ", 1)[-1], full)
        outcome.message = "not saved: fix the values marked"
        return outcome
    outcome.saved = [a.split("=", 1)[0] for a in assignments]
    outcome.message = f"saved {env.settings_file.name}: " + ", ".join(outcome.saved)
    return outcome
