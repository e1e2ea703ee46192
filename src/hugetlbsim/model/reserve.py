"""Making and releasing reservations for mappings (mm/hugetlb.c).

`hugetlb_reserve_pages` runs at mmap (and at shmget, with no VMA): a shared mapping reserves
the indexes missing from the inode's map, a private one reserves its whole length in a fresh
private map it owns; MAP_NORESERVE reserves nothing.  `hugetlb_vm_op_close` gives back what an
owner VMA did not consume.  The `vma_*_reservation` helpers are the per-index view the fault
path uses; on a private map their answers are inverted, because there an entry means
"reservation consumed".
"""

from __future__ import annotations

from hugetlbsim.model.errors import KernelError
from hugetlbsim.model.hstate import unsigned
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.inode import Inode
from hugetlbsim.model.kernels import SUBPOOL_UNWIND_EXACT, SUBPOOL_USED_RESTORE_ON_FAILED_RESERVE
from hugetlbsim.model.resv_map import ResvMap
from hugetlbsim.model.vma import VMA, PrivateResv

__all__ = [
    "hugetlb_reserve_pages", "hugetlb_vm_op_close", "vma_add_reservation",
    "vma_commit_reservation", "vma_end_reservation", "vma_needs_reservation"
]


def hugetlb_reserve_pages(inode: Inode, f: int, t: int, vma: VMA | None,
                          cgroup: HugetlbCgroup) -> None:
    """Reserve file indexes ``[f, t)`` for a new mapping (``vma``) or a shm segment (None).

    Order of checks as in the kernel: the reserving task's cgroup reservation counter, then
    the subpool, then the global pool; each failure undoes the earlier steps and mmap/shmget
    fail with ENOMEM whatever the cause.
    """
    if vma is not None and vma.noreserve:
        return
    shared = vma is None or vma.shared
    h = inode.hstate
    needed = 0
    if shared:
        chg, needed = inode.resv_map.region_chg(f, t)
    else:
        chg = t - f
    hit = cgroup.charge_rsvd(chg)
    if hit is not None:
        if shared:
            inode.resv_map.region_abort(f, t, needed)
        raise KernelError("ENOMEM", cgroup.refusal(hit, chg))
    spool = inode.spool
    gbl = chg if spool is None else spool.get_pages(chg)
    if gbl is None:
        assert spool is not None
        cgroup.rsvd.uncharge(chg)
        if shared:
            inode.resv_map.region_abort(f, t, needed)
        raise KernelError("ENOMEM", (
            f"the mount's size= limit is {spool.max_hpages} pages with {spool.used_hpages} "
            f"used, so {chg} more cannot be reserved"))
    free, resv = h.free_huge_pages, h.resv_huge_pages
    if not h.hugetlb_acct_memory(gbl):
        if spool is not None and h.kernel.has(SUBPOOL_UNWIND_EXACT):
            # Undo in two parts (a833a693a490): what came from the min_size reserve goes
            # back through put_pages; the rest is taken off used_hpages (1d3f9bb4c8af).
            h.hugetlb_acct_memory(-spool.put_pages(chg - gbl))
            if h.kernel.has(SUBPOOL_USED_RESTORE_ON_FAILED_RESERVE) and spool.max_hpages != -1:
                spool.used_hpages -= gbl
        elif spool is not None:
            # Before a833a693a490 (`out_put_pages`): the whole chg goes back and put's answer
            # is ignored, so a min_size reserve is refilled beyond what was taken from it.
            rsv = spool.rsv_hpages
            spool.put_pages(chg)
            h.resv_drift -= spool.rsv_hpages - rsv - (chg - gbl)
        cgroup.rsvd.uncharge(chg)
        if shared:
            inode.resv_map.region_abort(f, t, needed)
        raise KernelError("ENOMEM", (
            f"{gbl} pages must be reserved but Free {free} - Rsvd {unsigned(resv)} leaves "
            f"{max(0, free - resv)} unreserved and overcommit allows {h.surplus_capacity()} "
            f"more surplus pages"))
    if shared:
        inode.resv_map.region_add(f, t, needed, cgroup)
    else:
        assert vma is not None
        vma.resv = PrivateResv(ResvMap(inode.resv_map.policy), cgroup)
        vma.owner = True


def hugetlb_vm_op_close(vma: VMA) -> None:
    """An owner VMA piece goes: uncharge its whole range, return unconsumed reservations."""
    if not vma.private_owner:
        return
    assert vma.resv is not None
    f, t = vma.file_index(vma.start), vma.file_index(vma.end)
    reserve = (t - f) - vma.resv.map.region_count(f, t)
    if vma.resv.cgroup is not None:
        vma.resv.cgroup.rsvd.uncharge(t - f)
    if reserve > 0:
        spool = vma.inode.spool
        gbl = reserve if spool is None else spool.put_pages(reserve)
        vma.inode.hstate.hugetlb_acct_memory(-gbl)


def _resv_map(vma: VMA) -> ResvMap | None:
    """`vma_resv_map`: the inode's map for shared VMAs, the owner's map for private ones."""
    if vma.shared:
        return vma.inode.resv_map
    return vma.resv.map if vma.resv is not None and not vma.unmapped else None


def vma_needs_reservation(vma: VMA, index: int) -> int:
    """1 if the fault at file ``index`` has no reservation, 0 if it has one."""
    resv = _resv_map(vma)
    if resv is None:
        return 1
    chg, _ = resv.region_chg(index, index + 1)
    return chg if vma.shared else int(chg == 0)


def vma_commit_reservation(vma: VMA, index: int) -> int:
    """Record the fault in the map: shared adds the index, private marks it consumed."""
    resv = _resv_map(vma)
    if resv is None:
        return 1
    added = resv.region_add(index, index + 1, 1, None)
    return added if vma.shared else int(added == 0)


def vma_end_reservation(vma: VMA, index: int) -> None:
    """Back out a `vma_needs_reservation` that led nowhere."""
    resv = _resv_map(vma)
    if resv is not None:
        resv.region_abort(index, index + 1, 1)


def vma_add_reservation(vma: VMA, index: int) -> None:
    """Give the index its reservation back: shared re-adds it, private drops the marker."""
    resv = _resv_map(vma)
    if resv is None:
        return
    if vma.shared:
        resv.region_add(index, index + 1, 1, None)
    else:
        resv.region_abort(index, index + 1, 1)
        resv.region_del(index, index + 1)
