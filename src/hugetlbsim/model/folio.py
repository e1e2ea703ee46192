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

__all__ = ["Folio", "free_huge_folio"]


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
    h = folio.hstate
    restore = folio.restore_reserve
    folio.restore_reserve = False
    if not restore and folio.spool is not None and folio.spool.put_pages(1) == 0:
        restore = True
    folio.cgroup.fault.uncharge(1)
    if folio.cgroup_rsvd is not None:
        folio.cgroup_rsvd.rsvd.uncharge(1)
    if folio.memcg is not None and folio.memcg.memory is not None:
        folio.memcg.memory.uncharge(1)  # mem_cgroup_uncharge
    if restore:
        h.resv_huge_pages += 1
    h.enqueue_freed_page()
