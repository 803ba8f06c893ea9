"""`empty_list`: the default factory of a pydantic list field, which pydantic inspects cheaply.

Pydantic asks each ``default_factory`` for its signature (does it take the validated data?). The
builtin ``list`` has only a text signature, which `inspect` parses with `tokenize`, whose first
use compiles a large regular expression: some 3 ms of every ``agi`` start, for nothing. A Python
function's signature is read from its code object. (``dict`` has no text signature: it is cheap.)
A default of ``[]`` would do too, but pydantic deep-copies it for each instance: a record of
100,000 partitions read back would pay a copy per list field.
"""

from __future__ import annotations

from typing import Any

__all__ = ["empty_list"]


def empty_list() -> list[Any]:
    """A new empty list (a field's default)."""
    return []
