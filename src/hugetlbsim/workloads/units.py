"""Sizes as operators write them (``8GiB``, ``512MiB``, ``2Mi``) and their huge page counts.

Sizes in a composition always carry a binary unit (``KiB``/``MiB``/``GiB``/``TiB``, or the
Kubernetes spellings ``Ki``/``Mi``/``Gi``/``Ti``); a plain integer is a count (of pages, of
processes).  A size that is not a whole number of huge pages is rounded **up**, as every
program here rounds its request up to the huge page size before it maps it.
"""

from __future__ import annotations

import re

__all__ = ["PAGESIZE_BYTES", "UNITS", "SizeError", "pages", "parse_size", "show_pages",
           "show_size"]

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
"""Binary multipliers by their first letter (``KiB`` and ``Ki`` both mean 1024)."""
PAGESIZE_BYTES = {"2M": 2 << 20, "1G": 1 << 30}
"""The scenario page sizes in bytes."""
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT])(?:iB|i)\s*")
"""A number and a binary unit; ``GB`` (decimal to some, binary to others) is refused."""


class SizeError(ValueError):
    """A value that is not a size with a unit."""


def parse_size(value: object) -> int:
    """``"8GiB"`` → 8589934592 bytes; a bare number or an unknown unit is refused."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise SizeError(f"{value!r} is not a size; write it with a unit, e.g. '8GiB' or '512MiB'")
    m = _SIZE.fullmatch(value)
    if m is None or not m.group(2):
        raise SizeError(f"{value!r} is not a size; write it with a unit, e.g. '8GiB' or '512MiB'")
    number, unit = m.group(1), m.group(2)
    scaled = float(number) * UNITS[unit] if "." in number else int(number) * UNITS[unit]
    return int(scaled)


def pages(nbytes: int, pagesize: str) -> int:
    """Huge pages of ``pagesize`` needed to hold ``nbytes`` (rounded up)."""
    size = PAGESIZE_BYTES[pagesize]
    return -(-nbytes // size)


def show_size(nbytes: int) -> str:
    """A byte count in the largest binary unit that keeps it short: ``1.5 GiB``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.2f} {unit}"
    return f"{nbytes} B"


def show_pages(count: int, pagesize: str) -> str:
    """``1024 pages (2 GiB)``."""
    plural = "s" if count != 1 else ""
    return f"{count} page{plural} ({show_size(count * PAGESIZE_BYTES[pagesize])})"
