"""Cache keys: what a partition's result depends on, hashed, and kept so a miss can be explained.

A partition's key is the SHA-256 of: the cache format version, the app's code hash, the kernel
kind (python, cython, gpu), the partition's id, the args it reads (`Partition.reads`; all of them
by default), its payload, the stamps of its declared input files (`Partition.inputs`, see
`agi_core.cache.inputs`), and the keys of its dependencies. Chaining the dependencies' keys makes
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

from ..app import Partition
from ..errors import PlanError
from .inputs import InputStamper, describe_change, folder_entries

__all__ = ["CACHE_FORMAT", "KEYS_FILE", "KEYS_SCHEMA", "RunKeys", "explain", "kernel_kind_for_mode", "payload_fingerprint", "plan_keys",
           "read_run_keys"]

#: bump when the way results are keyed or stored changes: every older entry then misses
CACHE_FORMAT = 2
KEYS_SCHEMA = "agi.cache-keys.v1"
#: every run's keys, beside its record: what `agi runs show --why` compares and `agi cache gc` keeps
KEYS_FILE = "cache_keys.json"


def kernel_kind_for_mode(mode: int, compiled: str = "cython") -> str:
    """The kernel kind a mode asks for first (a worker that cannot provide it does not store its
    result): the first of `kernel_kinds.preference` (a request has it as ``shape.kernels[0]``)."""
    from ..kernel_kinds import preference

    return preference(mode, compiled)[0]


@dataclass
class RunKeys:
    """Every partition's key, with the parts it was made from (``<run>/cache_keys.json``)."""

    code: str
    kernel: str
    args: dict[str, Any]
    keys: dict[str, str]
    #: pid -> [reads (None: all args), payload fingerprint (`payload_fingerprint`), dependency ids] and, when it declares
    #: input files, [..., declared input paths]
    parts: dict[str, list[Any]] = field(default_factory=dict)
    format: int = CACHE_FORMAT
    #: every declared input's stamp (and each file's inside a declared folder), by path as declared
    inputs: dict[str, str] = field(default_factory=dict)
    #: how they were stamped: "stamp" (size, mtime) or "hash" (size, SHA-256)
    inputs_mode: str = "stamp"

    def to_json(self) -> bytes:
        return b"".join(self.json_chunks())

    def json_chunks(self, chunk: int = 20_000) -> Iterator[bytes]:
        """`to_json` in pieces of ``chunk`` partitions (a run writes them as they come: at
        1,000,000 partitions the whole text is 130 MB the manager need not hold)."""
        from pydantic_core import to_json

        head = to_json({"schema": KEYS_SCHEMA, "format": self.format, "code": self.code, "kernel": self.kernel,
                        "args": self.args, "inputs": self.inputs, "inputs_mode": self.inputs_mode})
        yield head[:-1]
        for name, table in (("keys", self.keys), ("parts", self.parts)):
            yield b',"' + name.encode() + b'":{'
            items, separator = iter(table.items()), b""
            while some := dict(islice(items, chunk)):
                yield separator + to_json(some)[1:-1]
                separator = b","
            yield b"}"
        yield b"}"

    @classmethod
    def keys_only_from_json(cls, data: bytes) -> RunKeys:
        """`from_json` without ``parts`` (what each key was made of, for ``--why``: 60% of the
        file): an unchanged re-run needs the keys alone. The parts are read only when the file
        has them last (`json_chunks` writes them last), else the whole file is read."""
        from pydantic_core import from_json

        cut = data.rfind(b',"parts":{')
        if cut < 0 or data.find(b'"inputs_mode":', 0, cut) < 0:
            return replace(cls.from_json(data), parts={})
        raw = from_json(data[:cut] + b"}")
        if not isinstance(raw, dict) or raw.get("schema") != KEYS_SCHEMA:
            raise ValueError(f"not a cache key file (schema {raw.get('schema')!r})")
        return cls(code=raw["code"], kernel=raw["kernel"], args=raw["args"], keys=raw["keys"], parts={},
                   format=raw["format"], inputs=raw.get("inputs") or {}, inputs_mode=raw.get("inputs_mode", "stamp"))

    @classmethod
    def from_json(cls, data: bytes | str) -> RunKeys:
        from pydantic_core import from_json

        raw = from_json(data)  # twice as fast as json.loads on 100,000 keys (an unchanged re-run reads them)
        if not isinstance(raw, dict) or raw.get("schema") != KEYS_SCHEMA:
            raise ValueError(f"not a cache key file (schema {raw.get('schema')!r})")
        return cls(code=raw["code"], kernel=raw["kernel"], args=raw["args"], keys=raw["keys"], parts=raw["parts"],
                   format=raw["format"], inputs=raw.get("inputs") or {}, inputs_mode=raw.get("inputs_mode", "stamp"))


#: one encoder for every payload: `json.dumps` builds a new one per call, a third of the keying time
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


_ascii_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # what the encoder uses for a str


#: a payload whose canonical JSON is this short is kept as it is (``=`` and the text) in the key
#: parts, instead of a digest of it (32 hex digits: never begins with ``=``)
_SHORT_PAYLOAD = 32


def payload_fingerprint(value: Any) -> str:
    """What stands for a payload in its partition's key: ``=`` and its canonical JSON when that
    is short (``=42``), else the first 32 hex digits of the JSON's SHA-256.

    >>> payload_fingerprint(42), payload_fingerprint("a"), len(payload_fingerprint(list(range(50))))
    ('=42', '="a"', 32)
    """
    text = _ENCODER.encode(value)
    return "=" + text if len(text) <= _SHORT_PAYLOAD else hashlib.sha256(text.encode()).hexdigest()[:32]


def _canonical(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def plan_keys(partitions: Sequence[Partition], *, code: str, args: Mapping[str, Any], kernel: str,
              stamper: InputStamper | None = None) -> RunKeys:
    """The key of every partition of a plan (dependencies first; the plan is already checked
    for cycles). A ``reads`` naming an arg the app does not have is a `PlanError`; so is a
    declared input that does not exist. ``stamper`` stamps declared inputs (default: size and
    modification time, relative paths from the current folder)."""
    args = dict(args)
    try:  # plans list dependencies first almost always: no ordering pass then
        return _keyed(partitions, code=code, args=args, kernel=kernel, stamper=stamper)
    except _DependencyLater:
        from ..plan import topological_order

        by_id = {p.id: p for p in partitions}
        ordered = [by_id[pid] for pid in topological_order(partitions)[0]]
        return _keyed(ordered, code=code, args=args, kernel=kernel, stamper=stamper)


class _DependencyLater(Exception):
    """A partition comes before one of its dependencies in the order given to `_keyed`."""


def _keyed(partitions: Sequence[Partition], *, code: str, args: dict[str, Any], kernel: str,
           stamper: InputStamper | None) -> RunKeys:
    head = hashlib.sha256(f"agi-cache\0{CACHE_FORMAT}\0{code}\0{kernel}\0".encode())
    copy = head.copy
    keys: dict[str, str] = {}
    parts: dict[str, list[Any]] = {}
    encode, sha256 = _ENCODER.encode, hashlib.sha256
    shared: dict[tuple[str, ...] | None, tuple[bytes, list[str] | None]] = {}  # reads -> (args digest, reads as listed)
    no_deps: list[str] = []  # one list object for every partition without dependencies (written as [])
    for part in partitions:
        pid, reads, value = part.id, part.reads, part.payload
        known = shared.get(reads)
        if known is None:
            known = shared[reads] = (_args_digest(pid, reads, args), list(reads) if reads is not None else None)
        kind = type(value)  # the common scalars without the encoder: the same text it would give
        text = str(value) if kind is int else _ascii_string(value) if kind is str else "null" if value is None else encode(value)
        # a short payload is its own fingerprint: one hash per partition instead of two
        payload = "=" + text if len(text) <= _SHORT_PAYLOAD else sha256(text.encode()).hexdigest()[:32]
        h = copy()
        h.update(b"%s\0%s%s" % (pid.encode(), known[0], payload.encode()))
        if part.inputs or part.deps:
            entry = [known[1], payload, list(part.deps)]
            if part.inputs:
                if stamper is None:
                    stamper = InputStamper(Path.cwd())
                try:
                    stamper.stamp(part.inputs)
                except PlanError as exc:
                    raise PlanError(f"partition '{pid}': {exc.message}", fix=exc.fix) from None
                h.update(b"\0inputs\0" + stamper.digest(part.inputs).encode())
                entry.append(list(part.inputs))
            for dep in part.deps:
                dep_key = keys.get(dep)
                if dep_key is None:
                    raise _DependencyLater(dep)
                h.update(b"\0" + dep_key.encode())
        else:
            entry = [known[1], payload, no_deps]
        keys[pid] = h.hexdigest()
        parts[pid] = entry
    stamps = stamper.stamps if stamper is not None else {}
    return RunKeys(code=code, kernel=kernel, args=args, keys=keys, parts=parts, inputs=dict(stamps),
                   inputs_mode=stamper.mode if stamper is not None else "stamp")


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


def explain(pid: str, *, old: RunKeys, new: RunKeys, depth: int = 0, _seen: set[str] | None = None,
            old_payloads: Mapping[str, Any] | None = None, new_payloads: Mapping[str, Any] | None = None) -> list[str]:
    """Why ``pid``'s key differs between two runs: each part of the key that changed, following a
    changed dependency up to the change that caused it. Empty when the keys are equal.
    ``old_payloads`` / ``new_payloads`` (partition id → payload, from the runs' plans) let it name
    the place inside a payload that changed (``payload.files[3]``)."""
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
    old_reads, old_payload, old_deps, *old_inputs = old.parts[pid]
    new_reads, new_payload, new_deps, *new_inputs = new.parts[pid]
    if old_reads != new_reads:
        reasons.append(f"{indent}the args it reads changed ({_names(old_reads)} → {_names(new_reads)})")
    names = sorted(set(old.args) | set(new.args)) if new_reads is None else new_reads
    for name in names:
        before, after = old.args.get(name, "<absent>"), new.args.get(name, "<absent>")
        if before != after:
            reasons.append(f"{indent}args.{name} was {before!r}, is now {after!r}")
    if old_payload != new_payload:
        changed = payload_changes(old_payloads.get(pid, _UNKNOWN), new_payloads.get(pid, _UNKNOWN)) \
            if old_payloads is not None and new_payloads is not None else []
        reasons.append(f"{indent}its payload changed" + (f": {', '.join(changed[:5])}" if changed else "")
                       + (f" and {len(changed) - 5} more" if len(changed) > 5 else ""))
    reasons += [indent + line for line in _input_changes(old, new, old_inputs[0] if old_inputs else [],
                                                         new_inputs[0] if new_inputs else [])]
    if old_deps != new_deps:
        reasons.append(f"{indent}its dependencies changed ({', '.join(old_deps) or 'none'} → {', '.join(new_deps) or 'none'})")
    elif not reasons:  # only a dependency's key changed: say which, and why
        for dep in new_deps:
            if old.keys.get(dep) != new.keys.get(dep) and dep not in seen:
                reasons.append(f"{indent}dependency {dep} changed:")
                reasons += explain(dep, old=old, new=new, depth=depth + 1, _seen=seen, old_payloads=old_payloads,
                                   new_payloads=new_payloads) or [f"{indent}  (its key changed)"]
                break
    return reasons or [f"{indent}its key changed"]


_UNKNOWN = object()


def payload_changes(before: Any, after: Any, where: str = "payload", limit: int = 20) -> list[str]:
    """Where two payloads differ, as paths into them: ``payload.files[3] was 'a.txt', is now 'b.txt'``.

    >>> payload_changes({"files": ["a", "b"], "n": 1}, {"files": ["a", "c"], "n": 1})
    ["payload.files[1] was 'b', is now 'c'"]
    """
    if before is _UNKNOWN or after is _UNKNOWN:
        return []
    found: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(found) >= limit or a == b and type(a) is type(b):
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for name in sorted(set(a) | set(b), key=str):
                inner = f"{path}.{name}" if str(name).isidentifier() else f"{path}[{name!r}]"
                if name not in a:
                    found.append(f"{inner} was added")
                elif name not in b:
                    found.append(f"{inner} was removed")
                else:
                    walk(a[name], b[name], inner)
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
            for k in range(min(len(a), len(b))):
                walk(a[k], b[k], f"{path}[{k}]")
            if len(a) != len(b):
                found.append(f"{path} has {len(b)} items, had {len(a)}")
        elif a != b:
            found.append(f"{path} was {_short(a)}, is now {_short(b)}")

    walk(before, after, where)
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _input_changes(old: RunKeys, new: RunKeys, old_declared: list[str], new_declared: list[str]) -> list[str]:
    """How a partition's declared inputs changed between two runs, file by file."""
    lines = []
    if old_declared != new_declared:
        gone, added = sorted(set(old_declared) - set(new_declared)), sorted(set(new_declared) - set(old_declared))
        lines += [f"it no longer declares input {path}" for path in gone] + [f"it now declares input {path}" for path in added]
    if old.inputs_mode != new.inputs_mode and set(old_declared) & set(new_declared):
        return [*lines, f"inputs are stamped another way ([cache] inputs = {old.inputs_mode!r} → {new.inputs_mode!r})"]
    for path in sorted(set(old_declared) & set(new_declared)):
        before, after = old.inputs.get(path), new.inputs.get(path)
        if before == after:
            continue
        if (before or "").startswith("folder:") and (after or "").startswith("folder:"):
            inside_old, inside_new = folder_entries(old.inputs, path), folder_entries(new.inputs, path)
            changed = [describe_change(name, inside_old.get(name), inside_new.get(name))
                       for name in sorted(set(inside_old) | set(inside_new)) if inside_old.get(name) != inside_new.get(name)]
            lines += changed or [describe_change(path, before, after)]
        else:
            lines.append(describe_change(path, before, after))
    return lines


def _names(reads: list[str] | None) -> str:
    return "all args" if reads is None else ", ".join(reads) or "no args"


def read_run_keys(run_dir: Path) -> RunKeys | None:
    """A run's keys (``<run>/cache_keys.json``), or None when it has none (a --no-cache run, or
    one that stopped before keying its plan) or they cannot be read."""
    try:
        return RunKeys.from_json((Path(run_dir) / KEYS_FILE).read_bytes())
    except (OSError, ValueError, KeyError):
        return None
