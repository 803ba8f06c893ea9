"""A partition's line in the run record: the fields of its `PartitionRecord`, as JSON.

Made where the partition ran (a pool slot, a Dask worker), right after it ran: the workers are
idle while the manager takes in 100,000 outcomes, and the manager then only stores bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

if TYPE_CHECKING:
    from ..executors import Outcome

__all__ = ["RETURNED", "CachedLines", "cached_line", "not_run_line", "partition_fields", "partition_line"]

#: where a partition's result is when it came back to the manager and is not in the cache
RETURNED = "run result"


#: the record fields every line has; the others are written only when set (a default is left out:
#: readers fill it in, and a record of 100,000 partitions stays smaller and faster to write)
_ALWAYS = ("id", "slot", "status", "worker", "host", "start", "end", "duration_s", "kernel", "device")


def _fields_function() -> Callable[[Outcome], dict[str, Any]]:
    """`partition_fields`, written out from `PartitionRecord`'s fields: each is the `Outcome`
    attribute of the same name, so a new field is one line in each of the two classes and the
    record line has it. Generated once, as `dataclasses` generates ``__init__``: a loop over the
    fields per partition was 3x slower, and a run of 100,000 partitions makes 100,000 lines."""
    from .model import PartitionRecord

    body = [f"    fields = {{{', '.join(f'{name!r}: outcome.{name}' for name in _ALWAYS)}}}",
            "    if outcome.status in ('ok', 'cached'):",  # a result is somewhere: the manager's, if not the cache's
            "        fields['result_location'] = outcome.result_location or RETURNED"]
    for name in PartitionRecord.model_fields:
        if name not in _ALWAYS and name != "result_location":
            body += [f"    if outcome.{name}:", f"        fields[{name!r}] = outcome.{name}"]
    source = "def partition_fields(outcome):\n" + "\n".join([*body, "    return fields"])
    namespace: dict[str, Any] = {"RETURNED": RETURNED}
    exec(compile(source, f"<{__name__}.partition_fields>", "exec"), namespace)  # noqa: S102 - our own field names
    function = namespace["partition_fields"]
    function.__doc__ = """One outcome as the fields of its `PartitionRecord` (plain data: fast to log as JSON)."""
    function.__source__ = source
    return function


partition_fields = _fields_function()


def partition_line(outcome: Outcome) -> bytes:
    """The outcome's record line (JSON, one line)."""
    return to_json(partition_fields(outcome), fallback=str)


def cached_line(pid: str, slot: str, kernel: str, location: str, key: str, note: str, outputs: tuple[str, ...] = ()) -> bytes:
    """The record line of a partition taken from the cache: what `partition_line` makes of its
    outcome, without the generic field-by-field checks.

    >>> from agi_core.executors import Outcome
    >>> hit = Outcome("p1", "s0", "cached", note="from the cache", cache="hit", cache_key="ab", result_location="/c/x.pack",
    ...               kernel="python")
    >>> cached_line("p1", "s0", "python", "/c/x.pack", "ab", "from the cache") == partition_line(hit)
    True
    """
    return CachedLines(note).line(pid, slot, kernel, location, key, outputs)


class CachedLines:
    """Makes the record lines of cache hits (`cached_line`) for one run: a re-run of 100,000
    partitions makes 100,000 of them before anything runs. A hit's line differs from the next
    one's in its id and key only (the slot, kernel and pack repeat), so the rest is encoded
    once per (kernel, pack) and only the id and key per line: 2.5x faster than a dict per line.

    >>> lines = CachedLines("from the cache")
    >>> lines.line("p1", "s0", "python", "/c/x.pack", "ab") == cached_line("p1", "s0", "python", "/c/x.pack", "ab", "from the cache")
    True
    """

    def __init__(self, note: str) -> None:
        self._end = b',"note":' + to_json(note) + b"}" if note else b"}"
        self._note = note
        self._middles: dict[tuple[str, str], bytes] = {}
        self._slots: dict[str, bytes] = {}

    def line(self, pid: str, slot: str, kernel: str, location: str, key: str, outputs: tuple[str, ...] = ()) -> bytes:
        if outputs:  # rare: the generic way
            fields = {"id": pid, "slot": slot, "status": "cached", "worker": "", "host": "", "start": 0.0, "end": 0.0,
                      "duration_s": 0.0, "kernel": kernel, "device": "", "result_location": location or RETURNED,
                      "cache_hit": True, "cache": "hit", "cache_key": key}
            if self._note:
                fields["note"] = self._note
            fields["outputs"] = outputs
            return to_json(fields, fallback=str)
        middle = self._middles.get((kernel, location)) or self._middle(kernel, location)
        encoded_slot = self._slots.get(slot)
        if encoded_slot is None:
            encoded_slot = self._slots[slot] = to_json(slot)
        return b'{"id":%b,"slot":%b%b%b%b' % (to_json(pid), encoded_slot, middle, to_json(key), self._end)

    def _middle(self, kernel: str, location: str) -> bytes:
        """What the lines of one (kernel, pack) share, between the slot and the key: encoded once."""
        middle = self._middles.get((kernel, location))
        if middle is None:
            middle = self._middles[(kernel, location)] = (
                b',"status":"cached","worker":"","host":"","start":0.0,"end":0.0,"duration_s":0.0,"kernel":' + to_json(kernel)
                + b',"device":"","result_location":' + to_json(location or RETURNED)
                + b',"cache_hit":true,"cache":"hit","cache_key":')
        return middle

    def maker(self, kernel: str, location: str, slots: Iterable[str]) -> Callable[[str, str, str], bytes]:
        """``line`` for the hits of one pack (one kernel, one location, no outputs) on ``slots``:
        ``maker(...)(pid, slot, key)``, made the same way with the per-pack part encoded once.

        >>> lines = CachedLines("from the cache")
        >>> lines.maker("python", "/c/x.pack", ["s0"])("p1", "s0", "ab") == lines.line("p1", "s0", "python", "/c/x.pack", "ab")
        True
        """
        middle, encoded, end = self._middle(kernel, location), self._slots, self._end
        for slot in slots:
            if slot not in encoded:
                encoded[slot] = to_json(slot)

        def line(pid: str, slot: str, key: str) -> bytes:
            # a cache key is hex digits (a SHA-256): its JSON string is itself in quotes, no encoder needed
            return b'{"id":%b,"slot":%b%b"%b"%b' % (to_json(pid), encoded[slot], middle, key.encode(), end)
        return line


def not_run_line(pid: str, slot: str | None) -> bytes:
    """The record line of a partition that never ran (the run failed or was interrupted first)."""
    return to_json({"id": pid, "slot": slot, "status": "not run"})
