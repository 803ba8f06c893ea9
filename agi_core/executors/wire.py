"""How outcomes cross a process boundary: each result in a pickle of its own, read result by result.

A pool slot or a Dask worker runs the app in the app's environment; the manager (or the worker that
runs a dependent partition) may lack a package a result needs (``work()`` returned a polars frame
and this process has no polars: legal, the app's environment is not the manager's). Pickled
together, one such result would make a whole batch unreadable; here it fails its own partition,
with the type, the cause and the fix, and every other outcome arrives intact.

Results of the plain built-in types (None, numbers, strings, bytes) load everywhere: they stay
inline, so a batch of 50,000 no-op results costs no more than before.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

from .base import Outcome

__all__ = ["pack_outcomes", "read_outcomes", "unpack_outcomes", "unreadable_result"]

_INLINE = frozenset({type(None), bool, int, float, complex, str, bytes})

#: in a packed frame: (index of the outcome, its result's pickle, the result type's module.qualname)
_Blob = tuple[int, bytes, str]


def pack_outcomes(outcomes: list[Outcome]) -> bytes:
    """``outcomes`` as one frame, each result pickled on its own. A result that cannot be pickled
    here fails its partition (the manager writes its record line)."""
    blobs: list[_Blob] = []
    held: list[tuple[Outcome, Any]] = []  # results taken out of their outcomes while the frame is made
    for index, outcome in enumerate(outcomes):
        result = outcome.result
        if type(result) in _INLINE:
            continue
        outcome.result, body, outcome.result_pickle = None, outcome.result_pickle, None
        try:
            # a stored result's cache entry is the same pickle: not made twice (a 100 MB frame pickles in ~0.1 s)
            blobs.append((index, body or pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), _type_name(result)))
        except Exception as exc:  # noqa: BLE001 - any pickling failure is that partition's failure
            outcome.status, outcome.line = "failed", b""
            outcome.error = f"the result of partition '{outcome.id}' cannot be sent back: {type(exc).__name__}: {exc}"
            continue
        held.append((outcome, result))
    try:
        return pickle.dumps((outcomes, blobs), protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for outcome, result in held:
            outcome.result = result


def read_outcomes(data: bytes, here: str) -> tuple[list[Outcome], dict[str, str]]:
    """The outcomes in ``data``, each with its result where this process can load it, and
    partition id → why not (`unreadable_result`) for those whose result it cannot load (their
    result is None). ``here``: this process, for the messages ("the manager", "worker h1-0")."""
    outcomes, blobs = pickle.loads(data)
    unreadable: dict[str, str] = {}
    for index, blob, type_name in blobs:
        outcome = outcomes[index]
        try:
            outcome.result = pickle.loads(blob)
        except Exception as exc:  # noqa: BLE001 - whatever stops the load, this result is unreadable here
            unreadable[outcome.id] = unreadable_result(type_name, exc, here)
    return outcomes, unreadable


def unpack_outcomes(data: bytes, here: str) -> list[Outcome]:
    """`read_outcomes`, with each outcome whose result this process cannot load failed, saying why."""
    outcomes, unreadable = read_outcomes(data, here)
    if unreadable:
        for outcome in outcomes:
            why = unreadable.get(outcome.id)
            if why is not None:
                outcome.status, outcome.error, outcome.line = "failed", why, b""  # the manager writes its line
    return outcomes


def unreadable_result(type_name: str, exc: BaseException, here: str) -> str:
    """Why a result of ``type_name`` cannot be loaded ``here``, and what to do about it."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    plain = "or return plain data (numbers, strings, lists, dicts)"
    if missing:
        fix = f"install {missing.split('.')[0]} in the environment of {here} ({sys.executable}), {plain}"
    else:
        fix = f"make {type_name} loadable there (the same code and package versions as where it ran), {plain}"
    return f"work() returned a {type_name}, which {here} cannot load ({type(exc).__name__}: {exc}): {fix}"


def _type_name(value: object) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"
