"""Durations and sizes as people write them (``30m``, ``2G``), as they are shown, and measured on disk.

>>> parse_duration("90m"), parse_duration("1.5h"), parse_duration("7d")
(5400.0, 5400.0, 604800.0)
>>> parse_size("500M"), parse_size("2G"), parse_size("1024")
(524288000, 2147483648, 1024)
>>> parse_size("2GiB"), parse_size("2GB"), parse_size("1.5 MiB")
(2147483648, 2000000000, 1572864)
>>> format_size(1536), format_size(3 * 1024**3), format_age(5400)
('1.5 KiB', '3.0 GiB', '1.5h')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import ByteSize, TypeAdapter, ValidationError

__all__ = ["disk_usage", "format_age", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: A number and a one-letter unit (``500M``, ``2g``): read as powers of 1024, as the docs have always said;
#: ``ByteSize`` alone would read the letter as SI (``M`` = 10^6).
_ONE_LETTER = re.compile(r"[\d.]+\s*[kmgtpe]", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``30m``, ``12h``, ``7d``, ``2w`` (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit s, m, h, d or w (30m, 12h, 7d)")
    return float(match[1]) * _DURATION_UNITS[match[2] or "s"]


def parse_size(text: str) -> int:
    """Bytes in ``500M``, ``2G``, ``100k`` (a single letter: powers of 1024), ``2GiB``, ``1.5 MiB`` (powers
    of 1024), ``2GB``, ``500 MB`` (powers of 1000, as SI and ``pydantic.ByteSize`` read them), ``1024``.

    The one-letter form is rewritten to its ``…iB`` unit, then ``ByteSize`` parses it, so the units and
    their values are pydantic's and not a second table here."""
    written = text.strip()
    if _ONE_LETTER.fullmatch(written):
        written += "iB"
    try:
        return int(TypeAdapter(ByteSize).validate_python(written))
    except ValidationError:
        raise ValueError(f"{text!r} is not a size: write a number and a unit: K, M, G, T or KiB, MiB, GiB, TiB "
                         "(powers of 1024: 500M, 2GiB) or KB, MB, GB, TB (powers of 1000: 500MB)") from None


def format_size(size: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def format_age(seconds: float) -> str:
    """``45s``, ``12m``, ``1.5h``, ``3d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}".replace(".0" + unit, unit)
    return f"{seconds:.0f}s"


def disk_usage(path: Path) -> int:
    """Bytes in ``path`` (a file, or a folder's files)."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except FileNotFoundError:
        return 0
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except FileNotFoundError:
                pass
    return total
