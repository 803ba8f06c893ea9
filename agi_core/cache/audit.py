"""Cache audits: which hits to recompute, and whether a recomputed result is the cached one.

A run with ``--audit F`` (``[cache] audit``) recomputes a share F of its cache hits, chosen at
random with a seed the record keeps (`audit_sample`), and the worker that recomputes one compares
it with its entry (`compare`). Digests first: the SHA-256 of the pickled result, as the entry's
header has it. Equal values can pickle differently in another process (a set of strings iterates
in its hash seed's order, a dict keeps its insertion order), so a digest that differs is not yet a
mismatch: the cached value is loaded and compared with the fresh one (`same_value`).

>>> audit_sample(["p0", "p1", "p2", "p3"], 0.5, seed=7) == audit_sample(["p0", "p1", "p2", "p3"], 0.5, seed=7)
True
>>> len(audit_sample([f"p{i}" for i in range(10)], 0.3, seed=1)), audit_sample(["a"], 0.01, seed=1)
(3, ['a'])
>>> same_value({"s": frozenset({"x", "y"})}, {"s": frozenset({"y", "x"})}), same_value(0.0, -0.0)
(True, False)
"""

from __future__ import annotations

import hashlib
import math
import pickle
import random
import secrets
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["AuditCheck", "audit_sample", "compare", "new_seed", "result_digest", "same_value"]


def new_seed() -> int:
    """A fresh seed for one run's choice of hits (kept in its record)."""
    return secrets.randbelow(2**32)


def audit_sample(ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The hits to audit: ``fraction`` of ``ids`` rounded up (at least one when ``fraction`` > 0),
    chosen at random by ``seed``, in the order of ``ids``. The same ids, fraction and seed always
    give the same choice."""
    if fraction <= 0 or not ids:
        return []
    count = min(len(ids), max(1, math.ceil(fraction * len(ids) - 1e-9)))
    chosen = set(random.Random(seed).sample(sorted(ids), count))
    return [pid for pid in ids if pid in chosen]


def result_digest(result: Any) -> str:
    """The SHA-256 of ``result`` pickled as the cache stores it (an entry header's ``sha256``)."""
    return hashlib.sha256(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


@dataclass(frozen=True)
class AuditCheck:
    """A recomputed result against its entry. ``verdict``: ``match``, ``mismatch``, or ``gone``
    (no trustworthy entry to compare with any more: removed or corrupt since the run loaded it)."""

    verdict: str
    cached: str  # the entry's digest, as the run found it
    fresh: str  # the recomputed result's digest
    note: str


def compare(store: CacheStore, key: str, result: Any, expected: str) -> AuditCheck:
    """Compare ``result`` (just recomputed) with the entry of ``key``, whose digest the run found
    to be ``expected``. Reads the entry only when the digests differ."""
    from .store import CorruptEntry

    fresh = result_digest(result)
    if fresh == expected:
        return AuditCheck("match", expected, fresh, "cache audit: recomputed, same result as the cache (same digest)")
    try:
        cached = store.load(key, touch=False).result
    except (FileNotFoundError, CorruptEntry) as exc:
        why = "removed" if isinstance(exc, FileNotFoundError) else "corrupt"
        return AuditCheck("gone", expected, fresh,
                          f"cache audit: recomputed, but its entry was {why} meanwhile: nothing to compare with")
    if same_value(cached, result):
        return AuditCheck("match", expected, fresh, "cache audit: recomputed, same result as the cache "
                                                    "(equal values; their pickles differ, e.g. a set's order)")
    return AuditCheck("mismatch", expected, fresh, f"cache audit: MISMATCH: the cached result (sha256 {expected}) differs from "
                                                   f"the recomputed one (sha256 {fresh})")


def same_value(a: Any, b: Any) -> bool:
    """Deep equality for results: containers element by element (sets and dicts whatever their
    order), floats bit for bit (NaN equals NaN, 0.0 is not -0.0), numpy arrays by dtype, shape
    and values with NaNs in the same places, pandas objects by ``.equals``, dataclasses and plain
    objects field by field. Anything that cannot be compared is not the same."""
    try:
        return _same(a, b)
    except Exception:  # noqa: BLE001 - an __eq__ that raises: not provably the same
        return False


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (str, bytes, int, bool, type(None), complex)):
        return bool(a == b) if not isinstance(a, complex) else _same(a.real, b.real) and _same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        return bool(a == b)  # elements are hashable and compared by ==: order does not matter
    module = type(a).__module__.split(".")[0]
    if module == "numpy":
        return _same_array(a, b)
    if module == "pandas" and hasattr(a, "equals"):
        return bool(a.equals(b))
    if is_dataclass(a):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    if type(a).__eq__ is object.__eq__ and hasattr(a, "__dict__"):  # no __eq__ of its own: compare its state
        return _same(vars(a), vars(b))
    return bool(a == b)


def _same_array(a: Any, b: Any) -> bool:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "O":
        return all(_same(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
