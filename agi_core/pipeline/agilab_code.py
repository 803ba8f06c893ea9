"""`read_agi_call`: what one AGILAB stage's code asks of `AGI.*`, read with `ast` (never run).

AGILAB's generated snippets build an ``AgiEnv(apps_path=..., app=...)`` (older ones:
``active_app=Path(...)``, ``apps_dir=``) and await one of ``AGI.install(env, modes_enabled=...,
scheduler=..., workers=...)``, ``AGI.get_distrib(env, scheduler=..., workers=..., **args)`` or
``AGI.run(env, mode=..., scheduler=..., workers=..., **args)``; the newest pass
``request=RunRequest(params=..., data_in=..., data_out=..., mode=..., ...)`` instead. Values are
often module constants (``APP = "flight_project"``, ``RUN_PARAMS = json.loads('{...}')``), so names
are followed to their one assignment. Anything that is not a literal (a function call, a name
bound twice, an f-string) makes the stage unconvertible, and the reason says which expression.

>>> call = read_agi_call('''
... APP = "toy_project"
... async def main():
...     env = AgiEnv(apps_path="/apps", app=APP, verbose=1)
...     return await AGI.run(env, mode=AGI.PYTHON_MODE | AGI.DASK_MODE, scheduler=None, workers=None, n=3)
... ''')
>>> call.kind, call.app, call.apps_path, call.mode, call.assignments
('run', 'toy', '/apps', 5, ['n=3'])
>>> read_agi_call("x = AGI.run(env, n=compute())")
'AGI.run: `compute()` is not a literal value'
>>> read_agi_call("print('no AGI here')") is None
True
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

__all__ = ["AgiCall", "read_agi_call", "toml_value"]

#: AGI method -> our step kind
KINDS = {"install": "install", "get_distrib": "distrib", "run": "run"}
# AGILAB's AGI mode constants (agi_distributor.py: PYTHON_MODE=1, CYTHON_MODE=2, DASK_MODE=4, RAPIDS_MODE=8);
# they are the same four bits as our Mode (pool, cython, cluster, rapids)
_MODE_CONSTANTS = {"PYTHON_MODE": 1, "CYTHON_MODE": 2, "DASK_MODE": 4, "RAPIDS_MODE": 8}
# keywords with no meaning here (logging, AGILAB-only switches): dropped, and the step's origin says so
_IGNORED = {"verbose", "rapids_enabled", "benchmark_best_single_node", "install_type"}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class NotLiteral(Exception):
    """An expression whose value cannot be known without running the code."""


@dataclass
class AgiCall:
    """One ``AGI.install / get_distrib / run`` call, as our step options."""

    kind: str
    app: str | None = None  # from AgiEnv(app=/active_app=); None: the code does not say
    apps_path: str | None = None  # AgiEnv(apps_path=/apps_dir=) as written (an AGILAB folder, maybe not here)
    mode: int | None = None
    assignments: list[str] = field(default_factory=list)  # --set KEY=VALUE
    dropped: list[str] = field(default_factory=list)  # keywords left out, e.g. "verbose"


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (the right side of ``--set KEY=VALUE``).

    >>> toml_value({"127.0.0.1": 2, "x": [1.5, True, "a"]})
    '{"127.0.0.1" = 2, x = [1.5, true, "a"]}'
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise NotLiteral(f"{value!r} has no TOML form")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


class _Reader:
    """Literal values of expressions in one module, following names to their single assignment."""

    def __init__(self, tree: ast.Module) -> None:
        self.bindings: dict[str, ast.expr | None] = {}  # None: bound more than once (ambiguous)
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            for target in targets:
                if isinstance(target, ast.Name):
                    self.bindings[target.id] = None if target.id in self.bindings else value
        self._busy: set[str] = set()

    def bound(self, name: str) -> ast.expr:
        value = self.bindings.get(name)
        if value is None:
            why = "is assigned more than once" if name in self.bindings else "is not assigned in the stage"
            raise NotLiteral(f"`{name}` {why}")
        return value

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return [self.value(item) for item in node.elts]
        if isinstance(node, ast.Dict):
            if any(key is None for key in node.keys):
                raise NotLiteral(f"`{ast.unparse(node)}` unpacks a mapping")
            return {self.value(key): self.value(val) for key, val in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand)
            if isinstance(operand, (int, float)) and not isinstance(operand, bool):
                return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.Add)):
            left, right = self.value(node.left), self.value(node.right)
            if isinstance(node.op, ast.BitOr) and type(left) is int and type(right) is int:
                return left | right
            if isinstance(node.op, ast.Add) and type(left) is type(right) and isinstance(left, (int, float, str)):
                return left + right
        if isinstance(node, ast.Name):
            if node.id in self._busy:
                raise NotLiteral(f"`{node.id}` is defined in terms of itself")
            self._busy.add(node.id)
            try:
                return self.value(self.bound(node.id))
            finally:
                self._busy.discard(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "AGI" \
                and node.attr in _MODE_CONSTANTS:
            return _MODE_CONSTANTS[node.attr]
        if isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
            name = ast.unparse(node.func)
            if name in ("Path", "pathlib.Path", "str"):
                return str(self.value(node.args[0]))
            if name == "json.loads":  # AGILAB writes run params as json.loads('<json>'): data, not code
                text = self.value(node.args[0])
                if isinstance(text, str):
                    try:
                        return json.loads(text)
                    except json.JSONDecodeError:
                        pass
        raise NotLiteral(f"`{ast.unparse(node)}` is not a literal value")

    def call(self, node: ast.expr, names: tuple[str, ...]) -> ast.Call | None:
        """``node`` (or the expression a name is bound to) when it is a call of one of ``names``."""
        if isinstance(node, ast.Name):
            node = self.bound(node.id)
        if isinstance(node, ast.Call) and ast.unparse(node.func).rsplit(".", 1)[-1] in names:
            return node
        return None


def _agi_calls(tree: ast.Module) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "AGI"]


def _app_name(value: Any) -> str:
    # app="flight_project", app="flight" or active_app=Path("/…/apps/flight_project"): the folder's name
    return PurePath(str(value).rstrip("/\\")).name.removesuffix("_project")


def _read_env(reader: _Reader, call: AgiCall, node: ast.expr) -> None:
    if isinstance(node, ast.Name) and node.id not in reader.bindings:
        return  # an env made elsewhere (a function's parameter): the app is the module's
    env = reader.call(node, ("AgiEnv",))
    if env is None:
        raise NotLiteral(f"`{ast.unparse(node)}` is not an AgiEnv(...)")
    for keyword in env.keywords:
        if keyword.arg in ("app", "active_app"):
            call.app = _app_name(reader.value(keyword.value))
        elif keyword.arg in ("apps_path", "apps_dir"):
            call.apps_path = str(reader.value(keyword.value))


def _options(reader: _Reader, call: AgiCall, items: list[tuple[str, Any]]) -> None:
    """Keyword arguments (name, value) of the call or of its RunRequest → mode and --set assignments."""
    for name, value in items:
        if value is None:  # AGILAB's "not set": the app's own setting applies
            call.dropped.append(f"{name}=None")
        elif name in ("mode", "modes_enabled"):
            call.mode = value if type(value) is int else _bad(f"mode {value!r} is not an int")
        elif name in _IGNORED:
            call.dropped.append(name)
        elif name in ("scheduler", "workers", "workers_data_path", "workflow_share_root"):
            key = "workers_data_path" if name == "workflow_share_root" else name
            call.assignments.append(f"cluster.{key}={toml_value(value)}")
        elif name == "params":
            if not isinstance(value, dict):
                _bad(f"RunRequest params {value!r} is not a mapping")
            _options(reader, call, [(str(k), v) for k, v in value.items()])
        elif name == "stages":
            if value:
                _bad("RunRequest stages (several app stages in one run) have no agi_core equivalent")
        else:
            call.assignments.append(f"{_key(name)}={toml_value(value)}")


def _keywords(reader: _Reader, keywords: list[ast.keyword]) -> list[tuple[str, Any]]:
    """(name, value) of each keyword; ``**mapping`` gives the mapping's items (AGILAB's ``**args``)."""
    items: list[tuple[str, Any]] = []
    for keyword in keywords:
        if keyword.arg is not None:
            items.append((keyword.arg, reader.value(keyword.value)))
            continue
        mapping = reader.value(keyword.value)
        if not isinstance(mapping, dict):
            raise NotLiteral(f"`**{ast.unparse(keyword.value)}` is not a mapping")
        items += [(str(k), v) for k, v in mapping.items()]
    return items


def _bad(why: str) -> Any:
    raise NotLiteral(why)


def read_agi_call(code: str) -> AgiCall | str | None:
    """The one ``AGI.*`` call in ``code`` as an `AgiCall`; a string saying why it cannot be
    converted; or None when the code calls no ``AGI`` method. ``code`` must parse."""
    tree = ast.parse(code)
    calls = _agi_calls(tree)
    if not calls:
        return None
    methods = [node.func.attr for node in calls]  # type: ignore[attr-defined]
    if len(calls) > 1:
        return f"it calls AGI {len(calls)} times ({', '.join(methods)}): one step holds one call"
    node, method = calls[0], methods[0]
    if method not in KINDS:
        return f"AGI.{method} has no agi_core step kind (install, get_distrib and run do)"
    call = AgiCall(kind=KINDS[method])
    reader = _Reader(tree)
    try:
        positional = list(node.args)
        keywords = list(node.keywords)
        env_node = positional.pop(0) if positional else next((k.value for k in keywords if k.arg in ("env", "app_env")), None)
        keywords = [k for k in keywords if k.arg not in ("env", "app_env")]
        if env_node is not None:
            _read_env(reader, call, env_node)
        if positional:
            return f"AGI.{method}: positional arguments after the env (`{ast.unparse(positional[0])}`)"
        items: list[tuple[str, Any]] = []
        for keyword in keywords:
            if keyword.arg == "request":
                request = reader.call(keyword.value, ("RunRequest",))
                if request is None or request.args:
                    return f"AGI.{method}: request `{ast.unparse(keyword.value)}` is not a RunRequest(...) of keywords"
                items += _keywords(reader, request.keywords)
            else:
                items += _keywords(reader, [keyword])
        _options(reader, call, items)
    except NotLiteral as exc:
        return f"AGI.{method}: {exc}"
    return call
