"""Kernel lines: which upstream changes a kernel release carries, as named switches.

HugeTLB accounting changed between releases and inside stable series.  Each change the model
follows is one `Switch`, keyed by its upstream commit, with the mainline release that first
carried it and the stable releases it was backported to.  A `Kernel` is one release (``6.1.192``,
``6.12.117``, ``6.18.44``); the flows ask ``kernel.has(SWITCH)``, never compare version numbers.
A line name (``"6.1"``) means the newest point of that line the model knows; a Debian ``uname -r``
(``6.1.0-57-cloud-amd64``) is mapped to its upstream stable release where known, else to the
nearest known point of its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DEFAULT", "KNOWN_POINTS", "LINES", "SWITCHES", "Kernel", "Switch", "UnknownKernel",
           "kernel"]

Release = tuple[int, int, int]


class UnknownKernel(ValueError):
    """A kernel name the model cannot place on any line it follows."""


@dataclass(frozen=True)
class Switch:
    """One upstream change that alters what the counters show."""

    name: str
    commit: str
    """The upstream commit id (12 hex digits)."""
    subject: str
    mainline: Release
    """The first mainline release carrying it (``(6, 15, 0)`` for v6.15)."""
    backports: dict[tuple[int, int], int] = field(default_factory=dict)
    """Stable line → first stable update carrying it (``{(6, 12): 23}``: 6.12.23)."""
    effect: str = ""
    confirmed: str = ""
    """Which real kernels confirmed the effect (empty: read from the source only)."""

    def carried_by(self, release: Release) -> bool:
        """Whether ``release`` has this change (in mainline, or backported to its line)."""
        if release >= self.mainline:
            return True
        stable = self.backports.get(release[:2])
        return stable is not None and release[2] >= stable


SWITCHES: Final[dict[str, Switch]] = {}
"""Every switch the model knows, by name (filled in by `_switch` below)."""


def _switch(switch: Switch) -> Switch:
    SWITCHES[switch.name] = switch
    return switch


LINES: Final = ("6.1", "6.12", "6.18")
"""The kernel lines the model follows."""

KNOWN_POINTS: Final[dict[str, Release]] = {
    "6.1.170": (6, 1, 170),
    "6.1.192": (6, 1, 192),
    "6.12.117": (6, 12, 117),
    "6.18.44": (6, 18, 44),
}
"""The releases measured on real kernels; a bare line name means its newest point here."""

_DEBIAN_ABI: Final[dict[tuple[int, int, int], Release]] = {
    (6, 1, 47): (6, 1, 170),
    (6, 1, 57): (6, 1, 192),
}
"""Debian's ``6.1.0-N`` ABI numbers whose upstream stable release is known."""

DEFAULT: Final = "6.18"


@dataclass(frozen=True)
class Kernel:
    """One kernel release the model follows, and how traces show it (``label``: the line name
    when a line was asked for, else the release)."""

    release: Release
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or ".".join(map(str, self.release))

    @property
    def line(self) -> str:
        return f"{self.release[0]}.{self.release[1]}"

    def has(self, switch: Switch) -> bool:
        """Whether this release carries ``switch``."""
        return switch.carried_by(self.release)

    def switches(self) -> list[Switch]:
        """The known switches this release carries."""
        return [s for s in SWITCHES.values() if self.has(s)]


def kernel(name: str | None = None) -> Kernel:
    """The release the model follows for ``name``: a line (``6.1``), a release (``6.1.192``) or
    a ``uname -r`` (``6.1.0-57-amd64``, ``6.12.117+deb12-cloud-amd64``); None means `DEFAULT`."""
    text = (name or DEFAULT).strip()
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:-(\d+))?(?:[-+].*)?", text)
    if match is None:
        raise UnknownKernel(f"{text[:60]!r} is not a kernel release; use one of "
                            f"{', '.join(LINES)} or a release such as 6.1.192")
    major, minor = int(match[1]), int(match[2])
    line = f"{major}.{minor}"
    points = sorted(r for r in KNOWN_POINTS.values() if r[:2] == (major, minor))
    if not points:
        raise UnknownKernel(f"the model does not follow kernel line {line}; it follows "
                            f"{', '.join(LINES)}")
    if match[3] is None:
        return Kernel(points[-1], line)
    release = (major, minor, int(match[3]))
    if match[4] is not None and release[2] == 0:
        abi = (major, minor, int(match[4]))
        if abi in _DEBIAN_ABI:
            return Kernel(_DEBIAN_ABI[abi])
        below = [r for a, r in sorted(_DEBIAN_ABI.items()) if a <= abi]
        return Kernel(below[-1] if below else points[0])
    return Kernel(release)
