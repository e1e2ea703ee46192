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

__all__ = ["CGROUP_RSVD_MISMATCH_FIX", "COW_OWNER_TAKES_SUBPOOL_RESERVE", "DEFAULT",
           "GBL_CHG_DECIDES_CONSUMPTION", "KNOWN_POINTS", "LINES", "MEMCG_HUGETLB",
           "RESTORE_RESERVE_ON_UNMAP", "SUBPOOL_UNWIND_EXACT",
           "SUBPOOL_USED_RESTORE_ON_FAILED_RESERVE", "SWITCHES", "UNMAP_RESTORE_ONLY_IF_UNMAPPED",
           "Kernel", "PointsTable", "Switch", "UnknownKernel", "kernel", "model_points_table"]

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
    scenario: str = ""
    """The scenario that shows the effect."""

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


# -- the switches ------------------------------------------------------------------------------
# Each is read from the kernel source at a release before and after the commit (the stable trees
# for the backports); `confirmed` lists the real kernels (vm guests, the host) whose traces match
# the model with the switch as the release carries it.

MEMCG_HUGETLB: Final = _switch(Switch(
    "memcg_hugetlb", "8cba9576df60",
    "hugetlb: memcg: account hugetlb-backed memory in memory controller", (6, 7, 0),
    effect="cgroup2's memory_hugetlb_accounting mount option: pages charged to memcg at "
           "allocation, uncharged when freed (before: the option does not exist, EINVAL)",
    scenario="a scenario with cgroups: v2 and memory_accounting: true is refused before 6.7",
    confirmed="6.1.0-57 (mount option refused), 6.12.117 (accepted)"))

RESTORE_RESERVE_ON_UNMAP: Final = _switch(Switch(
    "restore_reserve_on_unmap", "df7a6d1f6405", "mm/hugetlb: restore the reservation if needed",
    (6, 8, 0),
    effect="zapping an owner's private anon page (MADV_DONTNEED, munmap, exit, truncate, punch) "
           "while the pool has no surplus page gives its reservation back: the private map "
           "loses the index's consumed marker and the freed page restores Rsvd (Free+1 Rsvd+1; "
           "before: Free+1 only, and the re-fault needs an unreserved page and charges the "
           "faulting task's rsvd counter)",
    scenario="tests/kernel-lines/restore-reserve-on-unmap.yaml",
    confirmed="absent: 6.1.170, 6.1.192; present: 6.12.117 (vm), 6.18.44 (host): 3 scenarios "
              "each, every step the same as the model"))

UNMAP_RESTORE_ONLY_IF_UNMAPPED: Final = _switch(Switch(
    "unmap_restore_only_if_unmapped", "8ef4eb9ff874",
    "hugetlb: only adjust reservation during unmapping if mapcount is 0", (7, 1, 0),
    backports={(6, 12): 110},
    effect="restore-on-unmap acts only when the zapped page's last mapping goes (a page still "
           "mapped by a forked child keeps its marker and is freed later without restore); "
           "before: the owner's zap restores a page the child still maps, so Rsvd underflows "
           "(measured: P14a/P14b on 6.18.44).  Key and release: the 6.12.y commit (CVE-2026-"
           "89593, in 6.12.110); the mainline id was not found, its release is an estimate "
           "after 6.18; the behaviour is inferred from the subject (patch text not read)",
    scenario="tests/kernel-lines/unmap-restore-only-if-unmapped.yaml",
    confirmed="present: 6.12.117 (vm); absent: 6.18.44 (host): 2 scenarios each"))

SUBPOOL_UNWIND_EXACT: Final = _switch(Switch(
    "subpool_unwind_exact", "a833a693a490", "mm: hugetlb: fix incorrect fallback for subpool",
    (6, 15, 0), backports={(6, 14): 8},
    effect="failed reservations and failed allocations give back to a subpool only what came "
           "out of its min_size reserve (put(chg - gbl) and hugetlb_acct_memory(-ret); a "
           "failed fault puts its page back only when gbl_chg == 0); before: the whole chg "
           "(or the faulting page) is put back and the result ignored, so a min_size mount "
           "gains a phantom reservation and Rsvd underflows at umount",
    scenario="tests/kernel-lines/subpool-unwind-failed-mmap.yaml",
    confirmed="absent: 6.1.170, 6.1.192, 6.12.117 (vm); present: 6.18.44 (host): 3 scenarios "
              "each"))

SUBPOOL_USED_RESTORE_ON_FAILED_RESERVE: Final = _switch(Switch(
    "subpool_used_restore_on_failed_reserve", "1d3f9bb4c8af",
    "mm/hugetlb: restore failed global reservations to subpool", (6, 19, 0),
    backports={(6, 18): 44},
    effect="with subpool_unwind_exact, a failed mmap also takes its global part off a size= "
           "mount's used_hpages (statfs free unchanged by a failed mmap); without it (a833 "
           "alone) bfree drops by the global part.  Present by 6.18.44 (live P14d); the first "
           "6.18.y carrying it is not pinned",
    scenario="tests/kernel-lines/subpool-size-failed-mmap.yaml",
    confirmed="present: 6.18.44 (host: a failed mmap leaves statfs free as it was; a833 alone "
              "would not)"))

COW_OWNER_TAKES_SUBPOOL_RESERVE: Final = _switch(Switch(
    "cow_owner_takes_subpool_reserve", "58db7c5fbe7d",
    "mm/hugetlb: fix avoid_reserve to allow taking folio from subpool", (6, 14, 0),
    backports={(6, 13): 3, (6, 12): 14, (6, 1): 191},
    effect="the owner's COW after fork (avoid_reserve) uses the min_size reserve the subpool "
           "hands out (gbl_chg 0: Rsvd-1, no unreserved page needed); before: gbl_chg is "
           "forced to 1, so the subpool reserve is debited, no global one is consumed, and the "
           "freed copy restores Rsvd: +1 per owner COW on a min_size mount",
    scenario="tests/kernel-lines/cow-owner-subpool.yaml",
    confirmed="absent: 6.1.170; present: 6.1.192, 6.12.117 (vm), 6.18.44 (host): 2 scenarios "
              "each"))

GBL_CHG_DECIDES_CONSUMPTION: Final = _switch(Switch(
    "gbl_chg_decides_consumption", "923682a0dd57",
    "mm/hugetlb: clean up map/global resv accounting when allocate", (6, 14, 0),
    effect="an allocation consumes a global reservation iff the subpool returned gbl_chg 0, "
           "whatever the VMA; before (vma_has_reserves): a private non-owner VMA (fork child, "
           "MAP_PRIVATE|MAP_NORESERVE) never consumes, needs an unreserved free page, and its "
           "freed page restores Rsvd on a min_size mount (+1 each)",
    scenario="tests/kernel-lines/gbl-chg-consumption.yaml",
    confirmed="absent: 6.1.170, 6.1.192, 6.12.117 (vm); present: 6.18.44 (host): 3 scenarios "
              "each"))

CGROUP_RSVD_MISMATCH_FIX: Final = _switch(Switch(
    "cgroup_rsvd_mismatch_fix", "15807d0ddde3",
    "mm/hugetlb: fix hugetlb cgroup rsvd charge/uncharge mismatch", (7, 2, 0),
    backports={(6, 1): 191, (6, 12): 101, (6, 18): 40, (7, 1): 5},
    effect="alloc_hugetlb_folio keeps the rsvd charge's cgroup in its own pointer; before, the "
           "fault charge's cgroup overwrote it.  Both are the current task's cgroup, so they "
           "differ only when the task moves between the two charges (a race): no effect on a "
           "sequential scenario, none in the model.  CVE-2026-72213; key: one of the stable "
           "ids in the advisory (mainline id not pinned; releases from its affected ranges)",
    scenario="none (no sequential effect)"))

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


@dataclass(frozen=True)
class PointsTable:
    """What ``kernels --model`` shows: the known points and which switches each carries."""

    points: list[str]
    """Known releases, oldest first."""
    switches: list[Switch]
    """Every switch, in the order they were defined."""
    carries: dict[str, list[bool]]
    """Per point, one flag per switch (in `switches` order)."""
    aliases: dict[str, list[str]]
    """Per point, the other names that resolve to it (its line, Debian ABI names)."""


def model_points_table() -> PointsTable:
    """The points the model knows and, per point, which switches it carries."""
    points = sorted(KNOWN_POINTS, key=lambda name: KNOWN_POINTS[name])
    switches = list(SWITCHES.values())
    aliases: dict[str, list[str]] = {name: [] for name in points}
    for line in LINES:
        aliases[_dotted(kernel(line).release)].append(line)
    for abi, release in sorted(_DEBIAN_ABI.items()):
        aliases[_dotted(release)].append(f"{abi[0]}.{abi[1]}.0-{abi[2]}")
    carries = {name: [Kernel(KNOWN_POINTS[name]).has(s) for s in switches] for name in points}
    return PointsTable(points, switches, carries, aliases)


def _dotted(release: Release) -> str:
    return ".".join(map(str, release))
