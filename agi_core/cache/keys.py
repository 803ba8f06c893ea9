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
from ..base.errors import PlanError
from .inputs import InputStamper
from .key_changes import explain, payload_changes  # re-exported: explaining a miss lives in key_changes.py

__all__ = ["CACHE_FORMAT", "KEYS_FILE", "KEYS_SCHEMA", "RunKeys", "explain", "kernel_kind_for_mode", "payload_changes",
           "payload_fingerprint", "plan_keys", "read_run_keys"]

#: bump when the way results are keyed or stored changes: every older entry then misses
CACHE_FORMAT = 2
KEYS_SCHEMA = "agi.cache-keys.v1"
#: every run's keys, beside its record: what `agi runs show --why` compares and `agi cache gc` keeps
KEYS_FILE = "cache_keys.json"


def kernel_kind_for_mode(mode: int, compiled: str = "cython") -> str:
    """The kernel kind a mode asks for first (a worker that cannot provide it does not store its
    result): the first of `kernel_kinds.preference` (a request has it as ``shape.kernels[0]``)."""
    from ..kernels.kinds import preference

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


def read_run_keys(run_dir: Path) -> RunKeys | None:
    """A run's keys (``<run>/cache_keys.json``), or None when it has none (a --no-cache run, or
    one that stopped before keying its plan) or they cannot be read."""
    try:
        return RunKeys.from_json((Path(run_dir) / KEYS_FILE).read_bytes())
    except (OSError, ValueError, KeyError):
        return None
