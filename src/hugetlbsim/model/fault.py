"""The fault path: `alloc_hugetlb_folio`, `hugetlb_no_page`, `hugetlb_wp` (6.14+ semantics).

`alloc_hugetlb_folio` first asks the mapping's reservation map whether this index is reserved
(REUSE), not reserved (NEEDED) or whether the owner copies its own page after fork and must
not touch its map (ENFORCED).  Without a reservation the page is charged to the subpool, to
the faulting task's reservation counter, and it needs an *unreserved* free page or a fresh
surplus page.  Every page is charged to the fault counter.
"""

from __future__ import annotations

from enum import IntEnum

from hugetlbsim.model.blocks import explode, explode_anon
from hugetlbsim.model.errors import KernelError
from hugetlbsim.model.folio import Folio, free_huge_folio
from hugetlbsim.model.hstate import unsigned
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.inode import hugetlb_add_to_page_cache
from hugetlbsim.model.kernels import (
    COW_OWNER_TAKES_SUBPOOL_RESERVE,
    GBL_CHG_DECIDES_CONSUMPTION,
    SUBPOOL_UNWIND_EXACT,
)
from hugetlbsim.model.reserve import (
    vma_commit_reservation,
    vma_end_reservation,
    vma_needs_reservation,
)
from hugetlbsim.model.vma import VMA, Pte

__all__ = [
    "MapChg", "alloc_hugetlb_folio", "hugetlb_fault", "hugetlb_no_page", "hugetlb_wp",
    "unmap_ref_private"
]


class MapChg(IntEnum):
    """What the mapping's reservation map says about the faulting index."""

    REUSE = 0
    NEEDED = 1
    ENFORCED = 2


def alloc_hugetlb_folio(vma: VMA, index: int, cow_from_owner: bool,
                        cgroup: HugetlbCgroup) -> Folio:
    """Allocate a page for file ``index`` of ``vma``; KernelError("ENOSPC") if refused.

    The error path mirrors 6.18's unwinding, including its leak: a subpool page taken
    without a min_size reserve (`gbl_chg == 1`) is not returned when the allocation fails
    later, so a `size=` mount loses one page of capacity per failed fault (measured: P14d).
    Older releases differ where ``h.kernel`` lacks `COW_OWNER_TAKES_SUBPOOL_RESERVE`,
    `GBL_CHG_DECIDES_CONSUMPTION` or `SUBPOOL_UNWIND_EXACT` (see `hugetlbsim.model.kernels`).
    """
    h, spool = vma.inode.hstate, vma.inode.spool
    k = h.kernel
    if cow_from_owner:
        map_chg = MapChg.ENFORCED
    else:
        map_chg = MapChg.NEEDED if vma_needs_reservation(vma, index) else MapChg.REUSE
    gbl_chg = took = 0  # took: 1 when the page came out of the subpool's min_size reserve
    try:
        if map_chg != MapChg.REUSE:
            got = 1 if spool is None else spool.get_pages(1)
            if got is None:
                assert spool is not None
                raise KernelError("ENOSPC", (
                    f"the mount's size= limit of {spool.max_hpages} pages is used up "
                    f"({spool.used_hpages} reserved or allocated)"))
            gbl_chg, took = got, int(spool is not None and got == 0)
            if map_chg == MapChg.ENFORCED and not k.has(COW_OWNER_TAKES_SUBPOOL_RESERVE):
                # Before 58db7c5fbe7d, avoid_reserve "avoids even the subpool reservations":
                # the reserve get_pages handed out is debited but gbl_chg is forced to 1.
                gbl_chg = 1
            hit = cgroup.charge_rsvd(1)
            if hit is not None:
                _subpool_put(vma, map_chg, gbl_chg, took)
                raise KernelError("ENOSPC", cgroup.refusal(hit, 1))
        hit = cgroup.charge_fault(1)
        if hit is not None:
            _uncharge_rsvd(cgroup, map_chg)
            _subpool_put(vma, map_chg, gbl_chg, took)
            raise KernelError("ENOSPC", cgroup.refusal(hit, 1))
        if k.has(GBL_CHG_DECIDES_CONSUMPTION):
            consume = consume_surplus = not gbl_chg
        else:
            # Before 923682a0dd57 (v6.14): `vma_has_reserves(vma, gbl_chg)` decides, on the
            # dequeue path (which then needs no unreserved page); the buddy (surplus) path also
            # tests `!avoid_reserve` (58db7c5fbe7d dropped that test on the dequeue path only).
            consume = _vma_has_reserves(vma, gbl_chg)
            consume_surplus = consume and map_chg != MapChg.ENFORCED
        if h.dequeue_huge_page(int(not consume)):
            consumed = consume
        elif h.alloc_surplus_page():
            consumed = consume_surplus
        else:
            cgroup.fault.uncharge(1)
            _uncharge_rsvd(cgroup, map_chg)
            _subpool_put(vma, map_chg, gbl_chg, took)
            raise KernelError("ENOSPC", _no_page_sentence(vma, map_chg, not consume))
    except KernelError:
        if map_chg != MapChg.ENFORCED:
            vma_end_reservation(vma, index)
        raise
    folio = Folio(h, spool, cgroup, cgroup if map_chg != MapChg.REUSE else None)
    if cgroup.memory is not None:
        # mem_cgroup_charge_hugetlb (6.7+, memory_hugetlb_accounting): the allocating task's
        # memory cgroup, the same directory on the unified hierarchy.  Scenarios set no memory
        # limit, so the charge cannot fail.
        cgroup.memory.try_charge(1)
        folio.memcg = cgroup
    if consumed:
        folio.restore_reserve = True
        h.resv_huge_pages -= 1
    elif took:
        # Older releases: the subpool's reserve was debited, no global one consumed.
        h.resv_drift += 1
    if map_chg != MapChg.ENFORCED:
        vma_commit_reservation(vma, index)
    return folio


def _uncharge_rsvd(cgroup: HugetlbCgroup, map_chg: MapChg) -> None:
    if map_chg != MapChg.REUSE:
        cgroup.rsvd.uncharge(1)


def _vma_has_reserves(vma: VMA, chg: int) -> bool:
    """`vma_has_reserves` (dropped in v6.14 by the 923682a0dd57 series): whether an allocation
    for ``vma`` with global charge ``chg`` consumes a global reservation.

    MAP_NORESERVE: only a shared mapping whose index another mapping reserved; shared: when
    ``chg == 0``; private: only the owner of the reservation map, when ``chg == 0``.  A fork
    child and a private MAP_NORESERVE mapping never do.
    """
    if vma.noreserve:
        return vma.shared and chg == 0
    if vma.shared:
        return chg == 0
    return vma.owner and vma.resv is not None and chg == 0


def _subpool_put(vma: VMA, map_chg: MapChg, gbl_chg: int, took: int) -> None:
    """Give the subpool its page back after a failed allocation.

    Since a833a693a490 (v6.15) only a page that came out of the min_size reserve
    (``gbl_chg == 0``) goes back, and the global reservation follows put's answer.  Before,
    `out_subpool_put` put back every page taken (``map_chg || avoid_reserve``) and ignored the
    answer: on a min_size mount a page taken with ``gbl_chg == 1`` refills `rsv_hpages` with
    no global reservation behind it.
    """
    spool = vma.inode.spool
    if map_chg == MapChg.REUSE or spool is None:
        return
    h = vma.inode.hstate
    if not h.kernel.has(SUBPOOL_UNWIND_EXACT):
        rsv = spool.rsv_hpages
        spool.put_pages(1)
        h.resv_drift += took - (spool.rsv_hpages - rsv)
    elif not gbl_chg:
        vma.inode.hstate.hugetlb_acct_memory(-spool.put_pages(1))


def _no_page_sentence(vma: VMA, map_chg: MapChg, need_unreserved: bool) -> str:
    h = vma.inode.hstate
    if not need_unreserved:
        need = f"no free page ({h.free_huge_pages} free)"
    else:
        avail = unsigned(h.free_huge_pages - h.resv_huge_pages)
        why = {MapChg.NEEDED: "this index has no reservation",
               MapChg.ENFORCED: "the owner copies its own page after fork, without reserve",
               MapChg.REUSE: ""}[map_chg]
        if not vma.shared and vma.resv is None and map_chg == MapChg.NEEDED:
            why = ("this MAP_NORESERVE private mapping has no reservation" if vma.noreserve
                   else "the child of a fork has no reservation for this private mapping")
        need = (f"{why}, so it needs an unreserved free page: Free {h.free_huge_pages} - "
                f"Rsvd {unsigned(h.resv_huge_pages)} = {avail if avail < 2**63 else 0}")
    return (f"{need}, and overcommit allows no surplus page "
            f"({h.surplus_huge_pages} surplus of {h.nr_overcommit_huge_pages})")


def hugetlb_fault(vma: VMA, page: int, write: bool, cgroup: HugetlbCgroup) -> None:
    """Fault virtual ``page`` of ``vma`` for read or write; KernelError("SIGBUS") if it fails."""
    pte = vma.ptes.get(page)
    if pte is None:
        inode = vma.inode
        index = vma.file_index(page)
        block = inode.blocks.at(index) if inode.blocks else None
        if block is None or vma not in block.vmas:
            block = vma.blocks.at(page) if vma.blocks else None
        if block is None:
            hugetlb_no_page(vma, page, write, cgroup)
            return
        if block.writable or not write:
            return  # present, as it needs to be
        if block.anon:
            explode_anon(vma, page, page + 1)
        else:
            explode(inode, index, index + 1)
        pte = vma.ptes[page]
    if write and not pte.writable:
        hugetlb_wp(vma, page, cgroup)


def hugetlb_no_page(vma: VMA, page: int, write: bool, cgroup: HugetlbCgroup) -> None:
    """No PTE: map the page-cache page, or allocate one (page cache or private anon)."""
    if vma.unmapped:
        raise KernelError("SIGBUS", (
            "the owner of this private mapping took back a page it shared with this process "
            "after fork (no free page for its copy), so every fault in this mapping SIGBUSes"))
    inode = vma.inode
    index = vma.file_index(page)
    if inode.blocks:
        explode(inode, index, index + 1)
    folio = inode.page_cache.get(index)
    if folio is not None:
        folio.mapcount += 1
        vma.ptes[page] = Pte(folio, vma.shared and vma.writable)
        if write and not vma.shared:
            hugetlb_wp(vma, page, cgroup)
        return
    if index >= inode.i_size:
        raise KernelError("SIGBUS", (
            f"page index {index} is beyond the file size of {inode.i_size} pages"))
    try:
        folio = alloc_hugetlb_folio(vma, index, False, cgroup)
    except KernelError as err:
        raise KernelError("SIGBUS", err.why) from None
    if vma.shared:
        hugetlb_add_to_page_cache(inode, index, folio)
    else:
        folio.anon = True
        folio.restore_reserve = False
    folio.mapcount += 1
    vma.ptes[page] = Pte(folio, vma.writable and (vma.shared or write))


def hugetlb_wp(vma: VMA, page: int, cgroup: HugetlbCgroup) -> None:
    """Write to a present read-only PTE: reuse the page or copy it (COW).

    The owner of a private reservation copying its own anon page (shared with a child after
    fork) allocates with ENFORCED; if that fails, it takes the page back from every
    non-owner private mapping of it (`unmap_ref_private`) and keeps it - unless that took
    the owner's own PTE too (a MAP_NORESERVE private mapping of the same file in the owner's
    process): then the page may be gone, and the write faults again on an empty PTE.
    """
    pte = vma.ptes[page]
    old = pte.folio
    if vma.shared or (old.anon and old.mapcount == 1):
        pte.writable = True
        return
    cow_from_owner = vma.owner and old.anon
    index = vma.file_index(page)
    try:
        new = alloc_hugetlb_folio(vma, index, cow_from_owner, cgroup)
    except KernelError as err:
        if not cow_from_owner:
            raise KernelError("SIGBUS", err.why) from None
        unmap_ref_private(vma, page, old)
        if page in vma.ptes:
            pte.writable = True
            return
        if old.unused:
            free_huge_folio(old)
        # The PTE changed under the COW: hugetlb_wp returns 0 and the write faults again.
        hugetlb_no_page(vma, page, True, cgroup)
        return
    new.anon = True
    new.restore_reserve = False
    new.mapcount = 1
    vma.ptes[page] = Pte(new, True)
    old.mapcount -= 1
    if old.unused:
        free_huge_folio(old)


def unmap_ref_private(owner: VMA, page: int, folio: Folio) -> None:
    """Take ``folio`` back from the non-owner private VMAs of the file around its index.

    As the kernel does it: every private VMA of the file whose range covers the page's file
    index and that does not own a reservation map is unmapped at the *owner's* address in
    that VMA's own process, and is marked HPAGE_RESV_UNMAPPED if the page was found there.
    In a fork child that address is the child's copy of the mapping.  In the owner's own
    process it is the owner's own PTE: a MAP_NORESERVE private mapping of the same file there
    takes the page away from the owner and gets the mark itself (found by fuzzing on 6.1,
    6.12 and 6.18, seed 200060).
    """
    index = owner.file_index(page)
    name = next((n for n, pieces in owner.mm.maps.items() if owner in pieces), None)
    for vma in list(owner.inode.i_mmap):
        if vma is owner or vma.shared or vma.owner:
            continue
        if not vma.file_index(vma.start) <= index < vma.file_index(vma.end):
            continue
        at = vma.mm.maps.get(name, []) if name is not None else [vma]
        target = next((v for v in at if v.start <= page < v.end), None)
        pte = target.ptes.get(page) if target is not None else None
        if pte is not None and pte.folio is folio:
            assert target is not None
            del target.ptes[page]
            folio.mapcount -= 1
            vma.unmapped = True
