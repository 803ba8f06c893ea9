"""Cache keys: what a partition's result depends on, hashed, and kept so a miss can be explained.

A partition's key is the SHA-256 of: the cache format version, the app's code hash, the kernel
kind (python, cython, gpu), the partition's id, the args it reads (`Partition.reads`; all of them
by default), its payload, and the keys of its dependencies. Chaining the dependencies' keys makes
a change anywhere upstream change every key below it, without looking at any result: every key
of a plan is known before anything runs.

>>> from agi_core.app import Partition
>>> parts = [Partition("a", payload=1, reads=("x",)), Partition("b", deps=("a",), reads=("y",))]
>>> one = plan_keys(parts, code="c0de", args={"x": 1, "y": 2}, kernel="python")
>>> two = plan_keys(parts, code="c0de", args={"x": 1, "y": 3}, kernel="python")
>>> one.keys["a"] == two.keys["a"], one.keys["b"] == two.keys["b"]
(True, False)
>>> explain("b", old=one, new=two)
['args.y was 2, is now 3']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..app import Partition
from ..errors import PlanError

__all__ = ["CACHE_FORMAT", "KEYS_FILE", "KEYS_SCHEMA", "RunKeys", "explain", "kernel_kind_for_mode", "plan_keys", "read_run_keys"]

#: bump when the way results are keyed or stored changes: every older entry then misses
CACHE_FORMAT = 1
KEYS_SCHEMA = "agi.cache-keys.v1"
#: every run's keys, beside its record: what `agi runs show --why` compares and `agi cache gc` keeps
KEYS_FILE = "cache_keys.json"


def kernel_kind_for_mode(mode: int) -> str:
    """The kernel kind a mode asks for (a worker that cannot provide it does not store its result)."""
    return "gpu" if mode & 8 else "cython" if mode & 2 else "python"


@dataclass
class RunKeys:
    """Every partition's key, with the parts it was made from (``<run>/cache_keys.json``)."""

    code: str
    kernel: str
    args: dict[str, Any]
    keys: dict[str, str]
    #: pid -> [reads (None: all args), payload digest, dependency ids]
    parts: dict[str, list[Any]] = field(default_factory=dict)
    format: int = CACHE_FORMAT

    def to_json(self) -> bytes:
        from pydantic_core import to_json

        return to_json({"schema": KEYS_SCHEMA, "format": self.format, "code": self.code, "kernel": self.kernel,
                        "args": self.args, "keys": self.keys, "parts": self.parts})

    @classmethod
    def from_json(cls, data: bytes | str) -> RunKeys:
        raw = json.loads(data)
        if raw.get("schema") != KEYS_SCHEMA:
            raise ValueError(f"not a cache key file (schema {raw.get('schema')!r})")
        return cls(code=raw["code"], kernel=raw["kernel"], args=raw["args"], keys=raw["keys"], parts=raw["parts"],
                   format=raw["format"])


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def plan_keys(partitions: Sequence[Partition], *, code: str, args: Mapping[str, Any], kernel: str) -> RunKeys:
    """The key of every partition of a plan (dependencies first; the plan is already checked
    for cycles). A ``reads`` naming an arg the app does not have is a `PlanError`."""
    from ..plan import topological_order

    by_id = {p.id: p for p in partitions}
    args = dict(args)
    head = hashlib.sha256(f"agi-cache\0{CACHE_FORMAT}\0{code}\0{kernel}\0".encode())
    read_digests: dict[tuple[str, ...] | None, bytes] = {}
    keys: dict[str, str] = {}
    parts: dict[str, list[Any]] = {}
    order = topological_order(partitions)[0] if any(p.deps for p in partitions) else list(by_id)
    for pid in order:
        part = by_id[pid]
        reads = part.reads
        digest = read_digests.get(reads)
        if digest is None:
            digest = read_digests[reads] = _args_digest(pid, reads, args)
        payload = hashlib.sha256(_canonical(part.payload)).hexdigest()[:32]
        h = head.copy()
        h.update(pid.encode() + b"\0" + digest + payload.encode())
        for dep in part.deps:
            h.update(b"\0" + keys[dep].encode())
        keys[pid] = h.hexdigest()
        parts[pid] = [list(reads) if reads is not None else None, payload, list(part.deps)]
    return RunKeys(code=code, kernel=kernel, args=args, keys=keys, parts=parts)


def _args_digest(pid: str, reads: tuple[str, ...] | None, args: Mapping[str, Any]) -> bytes:
    if reads is None:
        chosen = args
    else:
        unknown = [name for name in reads if name not in args]
        if unknown:
            raise PlanError(f"partition '{pid}' reads arg(s) {', '.join(unknown)}, which the app's Args do not have "
                            f"(it has {', '.join(sorted(args)) or 'none'})",
                            fix="correct Partition(reads=...) in App.plan()")
        chosen = {name: args[name] for name in reads}
    return hashlib.sha256(_canonical(chosen)).digest()


def explain(pid: str, *, old: RunKeys, new: RunKeys, depth: int = 0, _seen: set[str] | None = None) -> list[str]:
    """Why ``pid``'s key differs between two runs: each part of the key that changed, following a
    changed dependency up to the change that caused it. Empty when the keys are equal."""
    if old.keys.get(pid) == new.keys.get(pid):
        return []
    seen = _seen if _seen is not None else set()
    seen.add(pid)
    indent = "  " * depth
    if pid not in old.parts:
        return [f"{indent}partition {pid} did not exist in the earlier run"]
    if pid not in new.parts:
        return [f"{indent}partition {pid} does not exist in the later run"]
    reasons: list[str] = []
    if old.format != new.format:
        reasons.append(f"{indent}the cache format changed ({old.format} → {new.format})")
    if old.code != new.code:
        reasons.append(f"{indent}the app's code changed (code hash {old.code[:12]} → {new.code[:12]})")
    if old.kernel != new.kernel:
        reasons.append(f"{indent}the kernel kind changed ({old.kernel} → {new.kernel})")
    old_reads, old_payload, old_deps = old.parts[pid]
    new_reads, new_payload, new_deps = new.parts[pid]
    if old_reads != new_reads:
        reasons.append(f"{indent}the args it reads changed ({_names(old_reads)} → {_names(new_reads)})")
    names = sorted(set(old.args) | set(new.args)) if new_reads is None else new_reads
    for name in names:
        before, after = old.args.get(name, "<absent>"), new.args.get(name, "<absent>")
        if before != after:
            reasons.append(f"{indent}args.{name} was {before!r}, is now {after!r}")
    if old_payload != new_payload:
        reasons.append(f"{indent}its payload changed")
    if old_deps != new_deps:
        reasons.append(f"{indent}its dependencies changed ({', '.join(old_deps) or 'none'} → {', '.join(new_deps) or 'none'})")
    elif not reasons:  # only a dependency's key changed: say which, and why
        for dep in new_deps:
            if old.keys.get(dep) != new.keys.get(dep) and dep not in seen:
                reasons.append(f"{indent}dependency {dep} changed:")
                reasons += explain(dep, old=old, new=new, depth=depth + 1, _seen=seen) or [f"{indent}  (its key changed)"]
                break
    return reasons or [f"{indent}its key changed"]


def _names(reads: list[str] | None) -> str:
    return "all args" if reads is None else ", ".join(reads) or "no args"


def read_run_keys(run_dir: Path) -> RunKeys | None:
    """A run's keys (``<run>/cache_keys.json``), or None when it has none (a --no-cache run, or
    one that stopped before keying its plan) or they cannot be read."""
    try:
        return RunKeys.from_json((Path(run_dir) / KEYS_FILE).read_bytes())
    except (OSError, ValueError, KeyError):
        return None
