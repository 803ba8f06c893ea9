"""The run mode: four independent bits (pool, cython, cluster, rapids)."""

from __future__ import annotations

import enum

from .errors import ModeError

__all__ = ["Mode"]

# AGILAB's letters: d ("dask") is the cluster bit.
_LETTERS = {"p": 1, "c": 2, "d": 4, "r": 8}
_VALID_FORMS = (
    "an int 0-15, a Mode flag (POOL|CYTHON|CLUSTER|RAPIDS, e.g. 'POOL|CLUSTER'), "
    "or letters from 'p c d r' (p=pool, c=cython, d=cluster, r=rapids; e.g. 'dcp' = 7)"
)

_FIX = "write e.g. 0 (this process), 1 or 'p' (local pool), 5 or 'dp' (cluster + pool)"


class Mode(enum.IntFlag):
    """How a run executes, as four bits.

    >>> Mode.parse("dcp")
    <Mode.POOL|CYTHON|CLUSTER: 7>
    >>> Mode.parse(13).letters
    'pdr'
    >>> str(Mode.parse("POOL|RAPIDS"))
    '9 (pr)'
    """

    POOL = 1
    CYTHON = 2
    CLUSTER = 4
    RAPIDS = 8

    @classmethod
    def parse(cls, value: object) -> Mode:
        """Read a mode from an int, a `Mode`, letters (``"pd"``) or flag names (``"POOL|CLUSTER"``)."""
        if isinstance(value, Mode):
            return value
        if isinstance(value, bool):  # bool is an int subclass; True is not a mode
            raise ModeError(f"invalid mode {value!r}: expected {_VALID_FORMS}", fix=_FIX)
        if isinstance(value, int):
            if 0 <= value <= 15:
                return cls(value)
            raise ModeError(f"invalid mode {value}: out of range; expected {_VALID_FORMS}", fix=_FIX)
        if isinstance(value, str):
            text = value.strip()
            if text.isdigit():
                return cls.parse(int(text))
            if text and set(text) <= set(_LETTERS) and len(set(text)) == len(text):
                return cls(sum(_LETTERS[letter] for letter in text))
            names = [name.strip().upper() for name in text.split("|")]
            if text and all(name in cls.__members__ for name in names):
                mode = cls(0)
                for name in names:
                    mode |= cls[name]
                return mode
        raise ModeError(f"invalid mode {value!r}: expected {_VALID_FORMS}", fix=_FIX)

    @property
    def letters(self) -> str:
        """The mode as letters in bit order, ``""`` for mode 0."""
        return "".join(letter for letter, bit in _LETTERS.items() if self.value & bit)

    def __str__(self) -> str:
        return f"{self.value} ({self.letters or '-'})"
