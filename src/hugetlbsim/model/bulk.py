"""Faulting a range of uniform pages at once, where every page would take the same path.

`fault_range` is what `touch` and MAP_POPULATE call for the pages of one VMA piece.  It faults
the first page through `hugetlb_fault` as always, then takes in one stride the longest run of
the following pages that the page-by-page path would each fault identically, and goes back to
`hugetlb_fault` from the first page whose outcome could differ (a page already present, the
free list or a cgroup limit running out...).  Counters and maps end exactly as the page-by-page
path leaves them, and the stride's pages are one `FolioBlock` standing for the folios and PTEs
it would have made (`hugetlbsim.model.blocks`); `BULK = False` turns the stride off (the
differential tests compare both).

Three strides are taken.

**Shared, reserved.**  A shared mapping's fault on indexes that are all reserved in the file's
map, none cached, none mapped, all below i_size.  Each such page is `hugetlb_no_page`'s new
page-cache page with `MapChg.REUSE`:

* `vma_needs_reservation`/`vma_commit_reservation` on a reserved index count no gap and add
  nothing; after the first page the region cache already holds the one entry `region_chg`
  asks for, so for the rest both calls leave the map exactly as it was (no entry, no cache
  growth, `adds_in_progress` back where it was);
* REUSE takes nothing from the subpool and charges no reservation (`took == 0`, no drift);
* the global reservation is consumed on every kernel line the model follows: with
  `GBL_CHG_DECIDES_CONSUMPTION` because ``gbl_chg == 0``, before it because
  `_vma_has_reserves` is true for a shared VMA with ``chg == 0`` (MAP_NORESERVE or not);
  the page comes off the free list (``dequeue_huge_page(0)`` needs only a free page);
* the fault charge (and the memory charge with memory accounting) succeeds while every level
  of the hierarchy has room: the stride stops where the first level would refuse.

**Shared, unreserved** (MAP_NORESERVE, punched holes): each page `MapChg.NEEDED`: one
subpool page (none from a min_size reserve, so ``gbl_chg == 1``), a reservation charge kept
by the page, no reservation consumed (``gbl_chg == 1``; before v6.14 `_vma_has_reserves` with
``chg == 1`` is false for a shared VMA), so an *unreserved* free page (``Free - Rsvd`` bounds
the run), and its index added to the file's map (`ResvMap.region_add_pages`: the same
regions, cache and allocator calls as each page's chg and add).

**Private owner.**  Indexes none of which the owner's map marks consumed, none cached, none
mapped, all below i_size: each page is `hugetlb_no_page`'s new anon page with
`MapChg.REUSE` (an index absent from a private map is reserved): the same charges,
consumption and free-list bound as the first stride, and each page's commit marks its index
consumed (`ResvMap.region_add_pages` again).  The pages are one anon block of the VMA.

Pages a block of the VMA already maps as the access needs are skipped in one step too
(`hugetlb_fault` would return at once on each).

**Writes to a write-protected anon block** (after fork).  Mapped by this VMA alone, each
page is `hugetlb_wp`'s reuse: the PTE becomes writable.  Mapped by others too, each page is a
COW copy charged as the shared unreserved stride charges its pages (a subpool page, its own
reservation charge, an unreserved free page, no reservation consumed): a fork child's with
`MapChg.NEEDED` (it has no map to ask or commit to), the owner's with `MapChg.ENFORCED` (its
map is left alone; ``gbl_chg`` is 1 on every line while no min_size reserve is drawn from, so
`COW_OWNER_TAKES_SUBPOOL_RESERVE` changes nothing, and nothing is consumed).  The copies are
a new anon block of this VMA and the old pages lose one mapping.  A copy that would fail (and
the owner's fallback, `unmap_ref_private`) is past the run's bounds: page by page.

fallocate (`fallocate_range`) allocates like a shared fault without a VMA, in the first two
strides (the pages stay unmapped, and i_size does not bound them).  A fork child's or a
MAP_NORESERVE private mapping (no map of its own), and every other path, go page by page.
"""

from __future__ import annotations

from hugetlbsim.model.blocks import cut
from hugetlbsim.model.fault import alloc_hugetlb_folio, hugetlb_fault
from hugetlbsim.model.folio import FolioBlock
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup, PageCounter
from hugetlbsim.model.inode import hugetlb_add_to_page_cache
from hugetlbsim.model.vma import VMA

__all__ = ["BULK", "fallocate_range", "fault_range"]

BULK = True
"""Take the uniform strides (False: every page through `hugetlb_fault`, for comparison)."""

_MIN_STRIDE = 4
"""Pages below which a stride is not worth its checks."""


def fault_range(vma: VMA, start: int, end: int, write: bool, cgroup: HugetlbCgroup,
                at: list[int] | None = None) -> None:
    """Fault virtual pages ``[start, end)`` of ``vma`` in order, as `hugetlb_fault` on each
    would (its KernelError at the first page that fails, with the same state); ``at[0]``,
    if given, is the page being faulted (the one that failed, on a KernelError)."""
    page = start
    while page < end:
        if at is not None:
            at[0] = page
        hugetlb_fault(vma, page, write, cgroup)
        page += 1
        if BULK and end - page >= _MIN_STRIDE:
            page += _present(vma, page, end, write)
            if end - page < _MIN_STRIDE:
                continue
            if vma.shared:
                page += _shared_stride(vma, page, end, cgroup)
            elif vma.blocks and write and vma.blocks.at(page) is not None:
                page += _write_stride(vma, page, end, cgroup)
            else:
                page += _private_stride(vma, page, end, write, cgroup)


def _present(vma: VMA, start: int, end: int, write: bool) -> int:
    """Pages from ``start`` that a block of ``vma`` already maps as this access needs
    (`hugetlb_fault` returns at once on each)."""
    if vma.shared:
        inode = vma.inode
        block = inode.blocks.at(vma.file_index(start)) if inode.blocks else None
        if block is None or vma not in block.vmas:
            return 0
        stop = vma.virtual_page(block.end)
    else:
        block = vma.blocks.at(start) if vma.blocks else None
        if block is None:
            return 0
        stop = block.end
    return min(stop, end) - start if block.writable or not write else 0


def fallocate_range(pseudo: VMA, start: int, end: int, cgroup: HugetlbCgroup) -> None:
    """Allocate every uncached index of ``[start, end)`` into the page cache, in order, as
    `alloc_hugetlb_folio` on the file's pseudo-VMA would (its KernelError at the first that
    fails, the pages before it kept)."""
    inode = pseudo.inode
    index = start
    while index < end:
        cached = inode.cached.run_end(index)
        if cached > index:
            index = cached
            continue
        hugetlb_add_to_page_cache(inode, index, alloc_hugetlb_folio(pseudo, index, False, cgroup))
        index += 1
        if BULK and end - index >= _MIN_STRIDE:
            index += _fallocate_stride(pseudo, index, end, cgroup)


def _room(counter: PageCounter | None) -> int | None:
    """Pages every level from ``counter`` up can still be charged (None: no bound)."""
    room: int | None = None
    while counter is not None:
        limit = counter.ceiling if counter.limit is None else counter.limit
        if limit is not None:
            left = max(limit - counter.usage, 0)
            room = left if room is None else min(room, left)
        counter = counter.parent
    return room


def _bound(vma: VMA, start: int, end: int, cgroup: HugetlbCgroup, n: int,
           sized: bool = True) -> int:
    """How many of at most ``n`` pages from ``start`` are uncached, unmapped, below i_size
    (if ``sized``: faults are, fallocate is not), and within the free list and every cgroup
    level's room.

    Each bound costs O(log n) and the search for a present page O(min(pages, PTEs)).
    """
    inode = vma.inode
    first = vma.file_index(start)
    n = min(n, end - start, inode.hstate.free_huge_pages)
    if sized:
        n = min(n, inode.i_size - first)
    cached = inode.cached.next_cached(first)
    if cached is not None:
        n = min(n, cached - first)
    for room in (_room(cgroup.fault), _room(cgroup.memory)):
        if room is not None:
            n = min(n, room)
    if n < _MIN_STRIDE:
        return 0
    ptes = vma.ptes
    if ptes:
        present = (next((p for p in range(start, start + n) if p in ptes), None)
                   if n < len(ptes) else min((p for p in ptes if start <= p < start + n),
                                             default=None))
        if present is not None:
            n = present - start
    if vma.blocks:
        held = vma.blocks.overlapping(start, start + n)
        if held:
            n = held[0].first - start
    return n if n >= _MIN_STRIDE else 0


def _charge(vma: VMA, n: int, cgroup: HugetlbCgroup,
            consume: bool = True) -> HugetlbCgroup | None:
    """``n`` allocations (fault.py: alloc_hugetlb_folio): fault (and memory) charge, dequeue,
    consuming a reservation each (REUSE) or not; the memory cgroup charged, if any."""
    if cgroup.fault.try_charge(n) is not None:  # cannot refuse: n fits every level
        raise AssertionError("a fault charge within the room was refused")
    memcg = None
    if cgroup.memory is not None:
        cgroup.memory.try_charge(n)
        memcg = cgroup
    h = vma.inode.hstate
    h.free_huge_pages -= n
    if consume:
        h.resv_huge_pages -= n
    return memcg


def _shared_stride(vma: VMA, start: int, end: int, cgroup: HugetlbCgroup) -> int:
    """Fault the longest uniform run of a shared mapping from ``start``; pages done."""
    if not vma.shared or vma.unmapped:
        return 0
    return _cache_stride(vma, start, end, cgroup, mapped=True)


def _private_stride(vma: VMA, start: int, end: int, write: bool,
                    cgroup: HugetlbCgroup) -> int:
    """Fault the longest uniform run of a private owner's mapping from ``start``; pages
    done."""
    if not vma.private_owner or vma.unmapped:
        return 0
    assert vma.resv is not None
    resv = vma.resv.map
    if not resv.allocator.never_fails:
        return 0
    first = vma.file_index(start)
    consumed = resv.region_next(first)
    n = _bound(vma, start, end, cgroup, end - start if consumed is None else consumed - first)
    if not n:
        return 0
    # hugetlb_no_page's anon branch, n times over.
    memcg = _charge(vma, n, cgroup)
    resv.region_add_pages(first, first + n)
    vma.blocks.add(FolioBlock(start, start + n, vma.inode.hstate, vma.inode.spool, cgroup,
                              memcg, [vma], vma.writable and write, anon=True))
    return n


def _fallocate_stride(pseudo: VMA, start: int, end: int, cgroup: HugetlbCgroup) -> int:
    """Allocate the longest uniform run of fallocate's indexes from ``start``; pages done."""
    return _cache_stride(pseudo, start, end, cgroup, mapped=False)


def _cache_stride(vma: VMA, start: int, end: int, cgroup: HugetlbCgroup, mapped: bool) -> int:
    """New page-cache pages from ``start``, reserved or not (see the module's note), mapped
    by ``vma`` or (fallocate) not; pages done."""
    inode = vma.inode
    resv = inode.resv_map
    first = vma.file_index(start)
    reserved = resv.region_end(first)
    if reserved > first:
        if resv.region_cache_count < resv.adds_in_progress + 1:
            return 0  # region_chg would grow the cache: the first page's own path
        n = _bound(vma, start, end, cgroup, reserved - first, sized=mapped)
        if n:
            _add_block(vma, first, n, cgroup, _charge(vma, n, cgroup), mapped)
        return n
    if not resv.allocator.never_fails:
        return 0
    nxt = resv.region_next(first)
    n = _needed_room(vma, end - start if nxt is None else nxt - first, cgroup)
    n = _bound(vma, start, end, cgroup, n, sized=mapped)
    if not n:
        return 0
    _charge_needed(vma, n, cgroup)
    memcg = _charge(vma, n, cgroup, consume=False)
    resv.region_add_pages(first, first + n)
    _add_block(vma, first, n, cgroup, memcg, mapped, cgroup_rsvd=cgroup)
    return n


def _needed_room(vma: VMA, n: int, cgroup: HugetlbCgroup) -> int:
    """How many of ``n`` `MapChg.NEEDED` allocations in a row would each succeed the same way:
    a subpool page each (none from a min_size reserve), a reservation charge, a fault (and
    memory) charge, and an unreserved free page."""
    h, spool = vma.inode.hstate, vma.inode.spool
    if spool is not None and spool.min_hpages != -1 and spool.rsv_hpages:
        return 0  # pages from the min_size reserve: gbl_chg 0, then 1
    if spool is not None and spool.max_hpages != -1:
        n = min(n, spool.max_hpages - spool.used_hpages)
    # dequeue_huge_page(1) needs an unreserved page: Free - Rsvd, unsigned, must not reach 0.
    if h.free_huge_pages - h.resv_huge_pages >= 0:
        n = min(n, h.free_huge_pages - h.resv_huge_pages)
    for room in (_room(cgroup.rsvd), _room(cgroup.fault), _room(cgroup.memory)):
        if room is not None:
            n = min(n, room)
    return max(min(n, h.free_huge_pages), 0)


def _charge_needed(vma: VMA, n: int, cgroup: HugetlbCgroup) -> None:
    """The subpool pages and reservation charges of ``n`` NEEDED allocations."""
    spool = vma.inode.spool
    if spool is not None:
        spool.get_pages(n)
    if cgroup.rsvd.try_charge(n) is not None:  # cannot refuse: n fits every level
        raise AssertionError("a reservation charge within the room was refused")


def _add_block(vma: VMA, first: int, n: int, cgroup: HugetlbCgroup,
               memcg: HugetlbCgroup | None, mapped: bool,
               cgroup_rsvd: HugetlbCgroup | None = None) -> None:
    """``n`` new page-cache pages from index ``first`` (hugetlb_add_to_page_cache), mapped by
    ``vma`` or not."""
    inode = vma.inode
    inode.blocks.add(FolioBlock(first, first + n, inode.hstate, inode.spool, cgroup, memcg,
                                [vma] if mapped else [], mapped and vma.writable,
                                cgroup_rsvd=cgroup_rsvd))
    inode.cached.add_range(first, first + n)
    inode.i_blocks += n
    inode.cache_version += n


def _write_stride(vma: VMA, start: int, end: int, cgroup: HugetlbCgroup) -> int:
    """Write the longest uniform run of a write-protected anon block from ``start``; pages
    done."""
    blocks = vma.blocks
    block = blocks.at(start)
    if block is None or block.writable or vma.unmapped:
        return 0
    n = min(end, block.end) - start
    if len(block.vmas) == 1:
        if n < _MIN_STRIDE:
            return 0
        done = cut(blocks, start, start + n)[0]
        done.writable = True  # hugetlb_wp's reuse: an anon page only this VMA maps
        return n
    n = _needed_room(vma, n, cgroup)
    if n < _MIN_STRIDE:
        return 0
    old = cut(blocks, start, start + n)[0]
    _charge_needed(vma, n, cgroup)
    memcg = _charge(vma, n, cgroup, consume=False)
    blocks.remove(old)
    old.vmas.remove(vma)
    blocks.add(FolioBlock(start, start + n, vma.inode.hstate, vma.inode.spool, cgroup, memcg,
                          [vma], True, anon=True, cgroup_rsvd=cgroup))
    return n
