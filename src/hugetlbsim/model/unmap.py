"""Tearing mappings down: page table zaps and VMA closes (mm/hugetlb.c, mm/vma.c).

munmap and exit first zap the page tables of every VMA piece involved
(`__unmap_hugepage_range`), then free the pages whose last reference went (the TLB batch),
then close the pieces (`hugetlb_vm_op_close`).  MADV_DONTNEED, truncation and hole punch zap
without closing.  Since v6.8 a zap of an owner's private anon page gives its reservation back
(the index's "consumed" marker is removed and the page restores `resv` when freed), but only
while the pool has no surplus page at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from hugetlbsim.model.blocks import cut, explode_anon, vma_blocks
from hugetlbsim.model.folio import Folio, FolioBlock, free_huge_folio, free_huge_pages
from hugetlbsim.model.kernels import RESTORE_RESERVE_ON_UNMAP, UNMAP_RESTORE_ONLY_IF_UNMAPPED
from hugetlbsim.model.reserve import hugetlb_vm_op_close, vma_add_reservation, vma_needs_reservation
from hugetlbsim.model.vma import VMA

__all__ = ["free_batch", "unmap_vmas", "zap_file_range", "zap_pages"]


def zap_pages(vma: VMA, start: int, end: int, freed: list[Folio | FolioBlock]) -> None:
    """`__unmap_hugepage_range` over virtual pages ``[start, end)`` of ``vma``.

    Pages whose last reference goes are appended to ``freed``; the caller frees them once
    every zap of the operation is done, as the TLB batch does.  Pages go in order, an anon
    block's as a whole.
    """
    h = vma.inode.hstate
    # df7a6d1f6405 (v6.8) added the restore; before it a zap touches no reservation.
    restores = h.kernel.has(RESTORE_RESERVE_ON_UNMAP)
    # "hugetlb: only adjust reservation during unmapping if mapcount is 0" (6.12.110):
    # a page another process still maps (a fork child) is left alone.
    last_only = h.kernel.has(UNMAP_RESTORE_ONLY_IF_UNMAPPED)
    for block in vma_blocks(vma, start, end, split=True):
        block.vmas.remove(vma)  # cached pages: one mapping fewer, none freed
    # Nothing the zap does changes Surp (frees wait for the batch), so this holds throughout;
    # an anon block restores every page's reservation or none (all anon, one mapcount).
    owner = restores and not h.surplus_huge_pages and vma.private_owner
    anon = _anon_blocks(vma, start, end, owner, last_only)
    ptes = vma.ptes
    # The mapped pages in [start, end), in order: from the range when it is the smaller.
    pages = ([p for p in range(start, end) if p in ptes] if end - start < len(ptes)
             else sorted(p for p in ptes if start <= p < end))
    k = 0
    for page in pages:
        while k < len(anon) and anon[k].first < page:
            _zap_anon_block(vma, anon[k], owner, last_only, freed)
            k += 1
        folio = ptes.pop(page).folio
        if owner and folio.anon and (not last_only or folio.mapcount == 1):
            folio.restore_reserve = True
            index = vma.file_index(page)
            # Without a marker to remove (rc == 0) the kernel neither adds nor ends: the
            # private map keeps one add in progress (invisible to every counter).
            if vma_needs_reservation(vma, index):
                vma_add_reservation(vma, index)
        folio.mapcount -= 1
        if folio.unused:
            freed.append(folio)
    for block in anon[k:]:
        _zap_anon_block(vma, block, owner, last_only, freed)


def _restores(block: FolioBlock, owner: bool, last_only: bool) -> bool:
    """Whether an owner's zap gives back the reservations of the block's pages."""
    return owner and (not last_only or len(block.vmas) == 1)


def _anon_blocks(vma: VMA, start: int, end: int, owner: bool,
                 last_only: bool) -> list[FolioBlock]:
    """The anon blocks in ``[start, end)``, split at its edges; those that restore but whose
    indexes are not all marked consumed are exploded first (each page then answers alone)."""
    if not vma.blocks:
        return []
    blocks = cut(vma.blocks, start, end)
    if owner:
        assert vma.resv is not None
        resv = vma.resv.map
        stale = [b for b in blocks if _restores(b, owner, last_only) and (
            resv.region_count(vma.file_index(b.first), vma.file_index(b.end)) != b.pages
            or not resv.allocator.never_fails)]
        for block in stale:
            explode_anon(vma, block.first, block.end)
        if stale:
            blocks = cut(vma.blocks, start, end)
    return blocks


def _zap_anon_block(vma: VMA, block: FolioBlock, owner: bool, last_only: bool,
                    freed: list[Folio | FolioBlock]) -> None:
    """Each page as the page loop would: restore its reservation (drop its consumed
    marker), one mapping fewer, freed with the last."""
    restore = _restores(block, owner, last_only)
    vma.blocks.remove(block)
    block.vmas.remove(vma)
    if restore:
        assert vma.resv is not None
        block.restore_reserve = True
        vma.resv.map.region_del_pages(vma.file_index(block.first), vma.file_index(block.end))
    if not block.vmas:
        freed.append(block)


def free_batch(freed: Iterable[Folio | FolioBlock]) -> None:
    """Flush the TLB batch: free every page whose last reference went."""
    for item in freed:
        if isinstance(item, Folio):
            free_huge_folio(item)
        else:
            free_huge_pages(item, item.pages)


def unmap_vmas(pieces: Iterable[tuple[VMA, int, int]]) -> None:
    """munmap/exit: zap each (vma, start, end), free the batch, then close each VMA.

    Each ``vma`` is a whole piece already split at the range's edges by the caller.
    """
    pieces = list(pieces)
    freed: list[Folio | FolioBlock] = []
    for vma, start, end in pieces:
        zap_pages(vma, start, end, freed)
    free_batch(freed)
    for vma, _, _ in pieces:
        hugetlb_vm_op_close(vma)
        vma.inode.i_mmap.remove(vma)


def zap_file_range(vmas: Iterable[VMA], start_index: int, end_index: int) -> None:
    """`hugetlb_vmdelete_list`: zap file indexes ``[start, end)`` from every VMA of a file.

    Each VMA is unmapped with its own TLB batch, so its pages are freed before the next VMA is
    zapped: a surplus page freed here can end the "no surplus" condition of the next VMA's
    restore-on-unmap (found by fuzzing, seed 1770).
    """
    for vma in vmas:
        lo = max(vma.start, vma.virtual_page(start_index))
        hi = min(vma.end, vma.virtual_page(end_index))
        if lo < hi:
            freed: list[Folio | FolioBlock] = []
            zap_pages(vma, lo, hi, freed)
            free_batch(freed)
