"""The global huge page pool of one page size (`struct hstate`, mm/hugetlb.c).

Counters: `nr_huge_pages` (Total), `free_huge_pages` (Free, reserved pages included),
`resv_huge_pages` (Rsvd: promised, not yet consumed), `surplus_huge_pages` (Surp),
`max_huge_pages` (the persistent target /proc/sys/vm/nr_hugepages reads back) and
`nr_overcommit_huge_pages`.  The kernel's counters are unsigned longs: `resv_huge_pages` really
does go below zero on 6.18 (measured: P14a) and is kept here as a Python int; `unsigned()`
shows it as the kernel does.  This layer knows nothing of mappings or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hugetlbsim.model.kernels import Kernel, kernel

__all__ = ["ULONG", "HState", "unsigned"]

ULONG = 2**64


def unsigned(value: int) -> int:
    """A counter as the kernel prints it (an unsigned long)."""
    return value % ULONG


@dataclass
class HState:
    """One page size's pool and its accounting operations."""

    gigantic: bool = False
    nr_huge_pages: int = 0
    free_huge_pages: int = 0
    resv_huge_pages: int = 0
    surplus_huge_pages: int = 0
    max_huge_pages: int = 0
    nr_overcommit_huge_pages: int = 0
    kernel: Kernel = field(default_factory=kernel)
    """The release whose behaviour the flows follow (they ask ``hstate.kernel.has(...)``)."""
    resv_drift: int = 0
    """Global reservations Rsvd holds beyond (or, negative, short of) what any mapping, subpool
    or page owns: the leaks of older releases' accounting, counted where they happen (never
    shown; the invariant check adds it).  Always 0 on a release with every fix."""

    @property
    def persistent_huge_pages(self) -> int:
        return self.nr_huge_pages - self.surplus_huge_pages

    def available_huge_pages(self) -> int:
        """Free pages not spoken for, computed in unsigned arithmetic as the kernel does."""
        return unsigned(self.free_huge_pages - self.resv_huge_pages)

    # -- reservations ------------------------------------------------------------------------

    def hugetlb_acct_memory(self, delta: int) -> bool:
        """Take (delta > 0) or return (delta < 0) global reservations; False if impossible.

        After a successful gather the kernel also refuses when ``delta`` exceeds the free pages
        of the allowed nodes (the cpuset check).  With one node that only bites when Rsvd has
        underflowed, and it then undoes the gather with `return_unused_surplus_pages`
        (found by fuzzing, seeds 782, 1323, 1734).
        """
        if delta > 0:
            if not self.gather_surplus_pages(delta):
                return False
            if delta > self.free_huge_pages:
                self.return_unused_surplus_pages(delta)
                return False
            return True
        if delta < 0:
            self.return_unused_surplus_pages(-delta)
        return True

    def gather_surplus_pages(self, delta: int) -> bool:
        """Reserve ``delta`` pages, allocating surplus pages for what Free cannot cover.

        All or nothing: when the overcommit limit stops the allocation, every page allocated
        for this call is released again and nothing changes.
        """
        needed = self.resv_huge_pages + delta - self.free_huge_pages
        if needed > 0:
            if self.surplus_capacity() < needed:
                return False
            self.nr_huge_pages += needed
            self.surplus_huge_pages += needed
            self.free_huge_pages += needed
        self.resv_huge_pages += delta
        return True

    def surplus_capacity(self) -> int:
        """How many fresh surplus pages `alloc_surplus_hugetlb_folio` would still hand out."""
        if self.gigantic:
            return 0
        return max(0, self.nr_overcommit_huge_pages - self.surplus_huge_pages)

    def return_unused_surplus_pages(self, unused: int) -> None:
        """Drop ``unused`` reservations and free up to that many free surplus pages."""
        self.resv_huge_pages -= unused
        release = min(unused, self.surplus_huge_pages, self.free_huge_pages)
        self.free_huge_pages -= release
        self.surplus_huge_pages -= release
        self.nr_huge_pages -= release

    # -- pages ---------------------------------------------------------------------------------

    def dequeue_huge_page(self, gbl_chg: int) -> bool:
        """Take a page off the free list; without a reservation only an unreserved one."""
        if gbl_chg and not self.available_huge_pages():
            return False
        if self.free_huge_pages <= 0:
            return False
        self.free_huge_pages -= 1
        return True

    def alloc_surplus_page(self) -> bool:
        """A fresh surplus page straight to the caller (never on the free list)."""
        if self.surplus_capacity() <= 0:
            return False
        self.nr_huge_pages += 1
        self.surplus_huge_pages += 1
        return True

    def enqueue_freed_page(self, pages: int = 1) -> None:
        """Placement of freed pages, one by one: each leaves the pool while surplus exists,
        else goes free."""
        gone = min(pages, max(self.surplus_huge_pages, 0))
        self.surplus_huge_pages -= gone
        self.nr_huge_pages -= gone
        self.free_huge_pages += pages - gone

    # -- pool size -----------------------------------------------------------------------------

    def set_max_huge_pages(self, count: int) -> None:
        """Write nr_hugepages: grow (surplus first, then fresh pages) or shrink.

        A shrink frees free pages only down to in use + reserved (the 6.15 form of
        `min_count`, which matches every measurement on 6.18.44); the rest of the excess is
        turned into surplus, even beyond the overcommit limit.
        """
        while self.surplus_huge_pages > 0 and count > self.persistent_huge_pages:
            self.surplus_huge_pages -= 1
        if count > self.persistent_huge_pages:
            grow = count - self.persistent_huge_pages
            self.nr_huge_pages += grow
            self.free_huge_pages += grow
        # `min_count` is an unsigned long: once Rsvd has underflowed it wraps (2^64-1 with no
        # page in use keeps every page; with one page in use it wraps to 0).
        min_count = max(count, unsigned(
            self.resv_huge_pages + self.nr_huge_pages - self.free_huge_pages))
        shrink = min(max(0, self.persistent_huge_pages - min_count), self.free_huge_pages)
        self.nr_huge_pages -= shrink
        self.free_huge_pages -= shrink
        while count < self.persistent_huge_pages and (
                self.surplus_huge_pages < self.nr_huge_pages):
            self.surplus_huge_pages += 1
        self.max_huge_pages = self.persistent_huge_pages

    def check(self) -> None:
        """What must hold whatever the sequence (Rsvd may legitimately underflow)."""
        assert 0 <= self.free_huge_pages <= self.nr_huge_pages, f"free out of range: {self}"
        assert 0 <= self.surplus_huge_pages <= self.nr_huge_pages, f"surplus out of range: {self}"
        assert self.max_huge_pages >= 0, f"max_huge_pages negative: {self}"
