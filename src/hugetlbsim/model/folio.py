"""Huge pages in use (`struct folio` of a hugetlb page) and `free_huge_folio`.

A folio carries what its freeing needs: whether its allocation consumed a global reservation
(`restore_reserve`, "RestoreReserve"), the subpool to credit, and the cgroups holding its fault
charge and, for pages allocated without a reservation, its reservation charge.  Free pages are
only counts in the `HState`; a folio exists from allocation until its last reference goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hugetlbsim.model.hstate import HState
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.subpool import HugepageSubpool

__all__ = ["Folio", "free_huge_folio", "free_huge_pages"]


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


def free_huge_folio(folio: Folio) -> None:
    """The last reference went: credit subpool, uncharge cgroups, return to the pool.

    A page that consumed a global reservation gives it back (`resv++`) instead of crediting
    the subpool; a subpool below its min_size also keeps the reservation (put returns 0).
    """
    restore = folio.restore_reserve
    folio.restore_reserve = False
    _free_page(folio.hstate, folio.spool, folio.cgroup, folio.cgroup_rsvd, folio.memcg, restore)


def free_huge_pages(h: HState, spool: HugepageSubpool | None, cgroup: HugetlbCgroup,
                    memcg: HugetlbCgroup | None, pages: int) -> None:
    """`free_huge_folio` on ``pages`` alike folios in turn (no reservation charge, none
    restoring): without a subpool, every step is a sum."""
    if spool is not None:
        for _ in range(pages):
            _free_page(h, spool, cgroup, None, memcg, False)
        return
    cgroup.fault.uncharge(pages)
    if memcg is not None and memcg.memory is not None:
        memcg.memory.uncharge(pages)
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
