"""docs/settings.md documents every settings key, and only keys that exist.

Convention (docs/settings.md, "Reference"): each key of the ``[cluster]`` and ``[cache]`` settings models has a row
in a Markdown table whose first cell is the key's full dotted name in backticks, and whose third
cell is its default::

    | key | type | default | meaning |
    |---|---|---|---|
    | `cluster.dask.scheduler_port` | int 0–65535 | `8786` | ... |

Dotted names are built by walking `ClusterSettings` recursively from ``cluster`` (and each built-in
backend's options model from ``cluster.<name>``): a field that is a
model (``ssh``, ``dask``, ...) has a row of its own and its fields below it; a field that maps keys
to a model (the worker map) has a row, and its model's fields use a placeholder for the key
(``cluster.workers.HOST.count``). ``[args]`` is each app's own model and is not checked here.

Checked: every key of the models has a row; every row whose first cell is a ``cluster...`` name
names a key that exists; and a default cell that starts with a backticked TOML value (`` `8786` ``,
`` `"~/.agi"` ``, `` `[]` ``) equals the model's default, ``none`` means a default of None, and
``(required)`` a field without default. Other default cells (empty, prose) are not checked.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from agi_core.settings import CacheSettings, ClusterSettings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
#: the placeholder of a mapping's keys in dotted names, by the mapping's dotted name
PLACEHOLDERS = {"cluster.workers": "HOST"}
_ROW = re.compile(r"^\|\s*`((?:cluster|cache)(?:\.[A-Za-z_]+)*)`\s*\|([^|]*)\|([^|]*)\|")
_LITERAL = re.compile(r"^`([^`]+)`")


def _models_in(annotation: typing.Any) -> list[type[BaseModel]]:
    """The models an annotation holds directly (``X``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _mapped_model(annotation: typing.Any) -> type[BaseModel] | None:
    """The value model of ``dict[K, Model]``, else None."""
    if typing.get_origin(annotation) is dict:
        models = _models_in(typing.get_args(annotation)[1])
        return models[0] if models else None
    return None


def settings_keys(model: type[BaseModel] = ClusterSettings, prefix: str = "cluster") -> dict[str, typing.Any]:
    """Every dotted key under ``prefix`` → its pydantic ``FieldInfo``."""
    keys: dict[str, typing.Any] = {}
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}"
        keys[key] = info
        for sub in _models_in(info.annotation):
            keys |= settings_keys(sub, key)
        mapped = _mapped_model(info.annotation)
        if mapped is not None:
            keys |= settings_keys(mapped, f"{key}.{PLACEHOLDERS.get(key, 'KEY')}")
    return keys


def documented_rows(text: str) -> dict[str, tuple[int, str]]:
    """Dotted key → (line, default cell) of each reference row of the page."""
    rows: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        found = _ROW.match(line)
        if found:
            rows.setdefault(found.group(1), (number, found.group(3).strip()))
    return rows


def backend_keys() -> dict[str, typing.Any]:
    """The keys of each built-in backend's own table, ``[cluster.<name>]`` (`ClusterBackend.Options`)."""
    from pydantic.fields import FieldInfo

    from agi_core.cluster import backend_class, known_backends

    keys: dict[str, typing.Any] = {}
    for name in known_backends:
        options = backend_class(name).Options
        if options.model_fields and name not in ClusterSettings.model_fields:
            keys[f"cluster.{name}"] = FieldInfo(annotation=options, default_factory=options)
            keys |= settings_keys(options, f"cluster.{name}")
    return keys


KEYS = settings_keys() | backend_keys() | settings_keys(CacheSettings, "cache")
ROWS = documented_rows(PAGE.read_text())


def test_the_walk_reaches_nested_tables_and_the_worker_map():
    for key in ("cluster.pool", "cluster.ssh", "cluster.dask.scheduler_port", "cluster.slurm.pending_timeout",
                "cluster.install.find_links", "cluster.workers", "cluster.workers.HOST.count", "cluster.workers.HOST.env"):
        assert key in KEYS, key
    assert "cluster.workers.HOST" not in KEYS  # the placeholder is a key of the map, not a field


def test_the_row_reader():
    text = "| `cluster.a.b` | int | `3` | x |\n| `width` | `1` | y |\n| `cluster.c` | table | | z |\n"
    assert documented_rows(text) == {"cluster.a.b": (1, "`3`"), "cluster.c": (3, "")}


def test_every_settings_key_is_documented():
    missing = sorted(set(KEYS) - set(ROWS))
    assert not missing, (f"settings keys without a row in {PAGE.name} (add `| `KEY` | type | default | meaning |` "
                         f"under its table's heading): {missing}")


def test_every_documented_key_exists():
    unknown = {key: line for key, (line, _) in ROWS.items() if key not in KEYS}
    assert not unknown, f"{PAGE.name} documents keys the settings models do not have: " + ", ".join(
        f"{key} (line {line})" for key, line in sorted(unknown.items()))


@pytest.mark.parametrize("key", sorted(k for k in ROWS if k in KEYS))
def test_documented_default_matches_the_model(key):
    line, cell = ROWS[key]
    info = KEYS[key]
    where = f"{PAGE.name}:{line}: {key}"
    if cell == "(required)":
        assert info.is_required(), f"{where}: documented as required, but has a default"
        return
    if info.is_required():
        pytest.fail(f"{where}: required, but its default cell says {cell!r}")
    default = to_jsonable_python(info.get_default(call_default_factory=True))
    if cell.split(" ")[0].rstrip(",;:") == "none":
        assert default is None, f"{where}: documented default none, the model's is {default!r}"
        return
    literal = _LITERAL.match(cell)
    if literal is None:
        return  # prose (a sub-table, a default that depends on the machine): not checked
    value = tomllib.loads(f"v = {literal.group(1)}")["v"]
    assert value == default and isinstance(value, bool) == isinstance(default, bool), (
        f"{where}: documented default {literal.group(1)}, the model's is {default!r}")
