"""What a work plan is built from, as JSON: its schema, its fingerprint (`fingerprint_of`), and why a
value would not come back the same from a plan file (`json_problem`), with the error naming the arg
or partition.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import to_json

from ..app import Partition
from ..base.errors import PlanError

__all__ = ["PAYLOAD_FIX", "SCHEMA", "encodes_as_json", "fingerprint_of", "json_problem"]


SCHEMA = "agi.workplan.v1"


def fingerprint_of(app: str, args: Mapping[str, Any], partitions: Sequence[Partition]) -> str:
    """SHA-256 of what a plan is built from: app name, args and partitions (not the assignment).

    A tuple and a list with the same items give the same fingerprint (JSON has only lists): a
    plan read back from its file has the fingerprint it was written with."""
    try:
        # Lists, not dicts, per partition: the same information, encoded twice as fast.
        canonical = json.dumps(
            [SCHEMA, app, args, [[p.id, p.weight, p.deps, p.needs, p.payload] + ([p.reads] if p.reads is not None else [])
                                 + ([{"prefers": p.prefers}] if p.prefers else [])
                                 + ([{"inputs": p.inputs}] if p.inputs else []) for p in partitions]],
            sort_keys=True, separators=(",", ":"), allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise _not_json_error(args, partitions, exc) from None
    return hashlib.sha256(canonical.encode()).hexdigest()


def _not_json_error(args: Mapping[str, Any], partitions: Sequence[Partition], exc: Exception) -> PlanError:
    """The error for a plan that JSON cannot carry, naming the arg or the partition (slow path)."""
    for name, value in args.items():
        problem = json_problem(value)
        if problem:
            return PlanError(f"arg {name!r} is not JSON data: {problem}",
                             fix="give the app's Args plain values (numbers, strings, lists, dicts with string keys)")
    for part in partitions:
        problem = json_problem(part.payload)
        if problem:
            return PlanError(f"partition '{part.id}' has a payload that is not JSON data: {problem}", fix=PAYLOAD_FIX)
    return PlanError(f"the plan is not JSON data: {type(exc).__name__}: {exc}", fix=PAYLOAD_FIX)


PAYLOAD_FIX = ("make App.plan() return payloads of dicts (with string keys), lists, strings and finite numbers: "
                "a plan file carries exactly those")


def json_problem(value: Any) -> str | None:
    """Why ``value`` would not come back the same from a plan file (JSON), or None: a type JSON
    has not, a float it cannot write (NaN, infinity), a dict key that is not a string (JSON would
    give work() the string instead), a string UTF-8 cannot encode. Tuples are fine (they come back
    as lists, with the same fingerprint)."""
    kind = type(value)
    if kind is str:
        return None if value.isascii() or _utf8(value) else f"the string {value[:40]!r} is not valid Unicode (a lone surrogate)"
    if kind is int or kind is bool or value is None:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"{value!r} (JSON has no NaN or infinity)"
    if kind is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                return f"the dict key {key!r} is not a string ({type(key).__name__}): {_key_in_json(key)}"
            problem = json_problem(key) or json_problem(item)
            if problem:
                return problem
        return None
    if kind is list or kind is tuple:
        for item in value:
            problem = json_problem(item)
            if problem:
                return problem
        return None
    for base in (str, int, float, dict, list, tuple):  # subclasses (an IntEnum, an OrderedDict) encode as their base
        if isinstance(value, base):
            return json_problem(base(value))
    return f"a {kind.__module__}.{kind.__qualname__} is not JSON data"


def encodes_as_json(part: Partition) -> bool:
    try:
        to_json(part)
    except ValueError:
        return False
    return True


def _key_in_json(key: Any) -> str:
    try:
        written = next(iter(json.loads(json.dumps({key: 0}))))
    except (TypeError, ValueError):
        return "JSON keys are strings"
    return f"JSON keys are strings, so a plan file would give work() the key {written!r} instead"


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
