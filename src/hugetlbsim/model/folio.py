"""Huge pages in use (`struct folio` of a hugetlb page) and `free_huge_folio`.

A folio carries what its freeing needs: whether its allocation consumed a global reservation
(`restore_reserve`, "RestoreReserve"), the subpool to credit, and the cgroups holding its fault
charge and, for pages allocated without a reservation, its reservation charge.  Free pages are
only counts in the `HState`; a folio exists from allocation until its last reference goes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hugetlbsim.model.hstate import HState
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.subpool import HugepageSubpool

if TYPE_CHECKING:
    from hugetlbsim.model.vma import VMA

__all__ = ["Folio", "FolioBlock", "FolioBlocks", "free_huge_folio", "free_huge_pages"]


@dataclass(eq=False, slots=True)
class Folio:
    """One huge page in use: in a page cache, mapped, or both."""

    hstate: HState
    spool: HugepageSubpool | None
    cgroup: HugetlbCgroup
    """Fault charge owner (moved to the parent when the cgroup is removed)."""
    cgroup_rsvd: HugetlbCgroup | None
    """Reservation charge owner, only for allocations that used no per-mapping reservation."""
    restore_reserve: bool = False
    memcg: HugetlbCgroup | None = None
    """The memory controller's charge (``memory_hugetlb_accounting``): it stays with the
    charging cgroup, removed or not, until the page is freed."""
    anon: bool = False
    in_page_cache: bool = False
    mapcount: int = 0

    @property
    def unused(self) -> bool:
        return self.mapcount == 0 and not self.in_page_cache


@dataclass(eq=False, slots=True)
class FolioBlock:
    """Pages alike in everything a folio records, made by one stride of faults.

    A page-cache block (in its inode's `blocks`): file indexes ``[first, end)``, each standing
    for ``Folio(hstate, spool, cgroup, cgroup_rsvd, memcg=memcg, in_page_cache=True,
    mapcount=len(vmas))`` and its ``Pte(folio, writable)`` in each of ``vmas``.  An ``anon``
    block (in each of its VMAs' `blocks`): virtual pages ``[first, end)`` of every VMA in
    ``vmas`` (a VMA and its fork copies), each standing for ``Folio(..., anon=True,
    mapcount=len(vmas))`` and its PTEs.  ``restore_reserve`` is set on a whole block by an
    owner's zap.
    """

    first: int
    end: int
    hstate: HState
    spool: HugepageSubpool | None
    cgroup: HugetlbCgroup
    memcg: HugetlbCgroup | None
    vmas: list[VMA]
    """The VMAs mapping every page (a page-cache block's may be none)."""
    writable: bool
    anon: bool = False
    restore_reserve: bool = False
    cgroup_rsvd: HugetlbCgroup | None = None
    """Each page's reservation charge (fallocate's pages on unreserved indexes), else None."""

    @property
    def pages(self) -> int:
        return self.end - self.first


class FolioBlocks:
    """An inode's or a VMA's blocks, sorted by first page, with their page total."""

    __slots__ = ("blocks", "firsts", "pages")

    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.blocks: list[FolioBlock] = []
        self.pages = 0

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def __iter__(self) -> Iterator[FolioBlock]:
        return iter(self.blocks)

    def at(self, index: int) -> FolioBlock | None:
        """The block holding ``index``, if any."""
        k = bisect_right(self.firsts, index) - 1
        if k >= 0 and self.blocks[k].end > index:
            return self.blocks[k]
        return None

    def overlapping(self, start: int, end: int) -> list[FolioBlock]:
        """The blocks meeting ``[start, end)``, in order."""
        if not self.blocks:
            return []
        k = max(bisect_right(self.firsts, start) - 1, 0)
        hi = bisect_left(self.firsts, end)
        return [b for b in self.blocks[k:hi] if b.end > start]

    def add(self, block: FolioBlock) -> None:
        k = bisect_left(self.firsts, block.first)
        self.firsts.insert(k, block.first)
        self.blocks.insert(k, block)
        self.pages += block.pages

    def remove(self, block: FolioBlock) -> None:
        k = bisect_left(self.firsts, block.first)
        del self.firsts[k], self.blocks[k]
        self.pages -= block.pages


def free_huge_folio(folio: Folio) -> None:
    """The last reference went: credit subpool, uncharge cgroups, return to the pool.

    A page that consumed a global reservation gives it back (`resv++`) instead of crediting
    the subpool; a subpool below its min_size also keeps the reservation (put returns 0).
    """
    restore = folio.restore_reserve
    folio.restore_reserve = False
    _free_page(folio.hstate, folio.spool, folio.cgroup, folio.cgroup_rsvd, folio.memcg, restore)


def free_huge_pages(block: FolioBlock, pages: int) -> None:
    """`free_huge_folio` on ``pages`` of ``block``'s alike folios in turn: unless a subpool
    with a min_size is credited (each put may answer differently), every step is a sum."""
    h, spool, cgroup, memcg = block.hstate, block.spool, block.cgroup, block.memcg
    restore, cgroup_rsvd = block.restore_reserve, block.cgroup_rsvd
    if spool is not None and not restore:
        if spool.min_hpages != -1:
            for _ in range(pages):
                _free_page(h, spool, cgroup, cgroup_rsvd, memcg, False)
            return
        # Without a min_size each put gives its page back (never 0) and releases nothing.
        if spool.max_hpages != -1:
            spool.used_hpages -= pages
    cgroup.fault.uncharge(pages)
    if cgroup_rsvd is not None:
        cgroup_rsvd.rsvd.uncharge(pages)
    if memcg is not None and memcg.memory is not None:
        memcg.memory.uncharge(pages)
    if restore:
        h.resv_huge_pages += pages
    h.enqueue_freed_page(pages)


def _free_page(h: HState, spool: HugepageSubpool | None, cgroup: HugetlbCgroup,
               cgroup_rsvd: HugetlbCgroup | None, memcg: HugetlbCgroup | None,
               restore: bool) -> None:
    if not restore and spool is not None and spool.put_pages(1) == 0:
        restore = True
    cgroup.fault.uncharge(1)
    if cgroup_rsvd is not None:
        cgroup_rsvd.rsvd.uncharge(1)
    if memcg is not None and memcg.memory is not None:
        memcg.memory.uncharge(1)  # mem_cgroup_uncharge
    if restore:
        h.resv_huge_pages += 1
    h.enqueue_freed_page()
