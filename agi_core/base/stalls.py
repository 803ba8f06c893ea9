"""When a partition that is still running counts as late, and when as hung.

A partition's expected time is its weight times the run's observed rate (seconds per unit of
weight, over the partitions finished so far). A partition running far longer than that earns one
notice; one running past ``[cluster] partition_timeout`` has its worker stopped, and is retried
elsewhere within ``[cluster] retries`` or failed. The forms of ``partition_timeout``:

- ``"auto"`` (the default): 20 times the expected time, at least 10 minutes; one hour while no
  partition has finished yet (nothing to measure a rate on). A real hang never waits forever,
  and a partition that is merely slow is not stopped by jitter;
- a number: that many seconds, whatever the expected time;
- ``"Nx"`` (e.g. ``"5x"``): N times the expected time, at least 10 s; one hour while no rate is known;
- ``"off"``: never (a hung partition then waits for Ctrl-C).

>>> policy = StallPolicy.parse("5x")
>>> policy.timeout(expected=4.0), policy.timeout(expected=None)
(20.0, 3600.0)
>>> StallPolicy.parse(90).timeout(expected=1000.0)
90.0
>>> StallPolicy.parse("auto").late_after(expected=0.001)
10.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RateMeter", "StallPolicy"]

#: while no partition has finished, a multiple of nothing: wait this long before calling it hung
_NO_RATE_TIMEOUT_S = 3600.0
_AUTO_MULTIPLE, _AUTO_FLOOR_S = 20.0, 600.0
_MULTIPLE_FLOOR_S = 10.0
#: a notice when a partition runs this many times longer than expected, and at least this long
_LATE_MULTIPLE, _LATE_FLOOR_S = 10.0, 10.0
_FORM = re.compile(r"\s*(\d+(?:\.\d+)?)\s*x\s*", re.IGNORECASE)


@dataclass(frozen=True)
class StallPolicy:
    """``partition_timeout`` parsed: ``seconds`` (fixed), or ``multiple`` of the expected time at
    least ``floor`` seconds; neither: never."""

    seconds: float | None = None
    multiple: float | None = None
    floor: float = 0.0

    @classmethod
    def parse(cls, value: float | int | str) -> StallPolicy:
        """A policy from a ``partition_timeout`` value; `ValueError` names the accepted forms."""
        if isinstance(value, bool):
            raise ValueError(_bad(value))
        if isinstance(value, int | float):
            if not value > 0:
                raise ValueError(_bad(value))
            return cls(seconds=float(value))
        text = str(value).strip().lower()
        if text == "auto":
            return cls(multiple=_AUTO_MULTIPLE, floor=_AUTO_FLOOR_S)
        if text in ("off", "none", "never"):
            return cls()
        match = _FORM.fullmatch(text)
        if match and float(match.group(1)) > 0:
            return cls(multiple=float(match.group(1)), floor=_MULTIPLE_FLOOR_S)
        try:
            return cls.parse(float(text))
        except ValueError:
            raise ValueError(_bad(value)) from None

    def timeout(self, expected: float | None) -> float | None:
        """Seconds a partition expected to take ``expected`` seconds (None: unknown yet) may run
        before it counts as hung; None: never."""
        if self.seconds is not None:
            return self.seconds
        if self.multiple is None:
            return None
        if expected is None:
            return _NO_RATE_TIMEOUT_S
        return max(self.floor, self.multiple * expected)

    def late_after(self, expected: float | None) -> float:
        """Seconds after which a running partition earns its notice: well past its expected
        time, and at the latest half way to its timeout (so the notice comes before the stop)."""
        late = max(_LATE_FLOOR_S, _LATE_MULTIPLE * expected) if expected is not None else _LATE_FLOOR_S * 6
        timeout = self.timeout(expected)
        return min(late, timeout / 2) if timeout is not None else late


def _bad(value: object) -> str:
    return (f"invalid partition_timeout {value!r}: expected seconds (e.g. 600), a multiple of a partition's expected "
            'time (e.g. "10x"), "auto" (20x, at least 10 minutes) or "off"')


class RateMeter:
    """Seconds per unit of weight over the partitions finished so far: what a partition of a
    given weight is expected to take.

    >>> meter = RateMeter()
    >>> meter.expected(2.0) is None
    True
    >>> meter.add(weight=1.0, seconds=0.5); meter.add(weight=3.0, seconds=1.5)
    >>> meter.expected(2.0)
    1.0
    """

    def __init__(self) -> None:
        self._seconds = 0.0
        self._weight = 0.0

    def add(self, *, weight: float, seconds: float) -> None:
        self._seconds += max(0.0, seconds)
        self._weight += max(weight, 1e-12)

    def expected(self, weight: float) -> float | None:
        """Seconds a partition of ``weight`` should take; None while nothing has finished."""
        if not self._weight:
            return None
        return weight * self._seconds / self._weight
