"""Runs of alike pages, kept as one object until a page differs (`FolioBlock`).

A stride of faults (`hugetlbsim.model.bulk`) makes pages that are all alike: charged to one
cgroup (and memory cgroup), mapped by the same VMAs (a fork adds its copy of the VMA to every
block the VMA maps: mapcount is their number) with one write permission, and either all in the
page cache (a shared mapping's stride or fallocate: the block lives in the inode's `blocks`, by
file index) or all anon (a private owner's stride: in each mapping VMA's `blocks`, by virtual
page, the same pages in a fork child's copy). Holding each as a `Folio` with its `Pte` costs a
few hundred bytes and a microsecond a page; a block holds them in O(1). The kernel has no such
thing: a block is only a compressed form of the folios it stands for, and each flow either
handles a whole block exactly as it would handle each of its pages in turn (a zap leaves
page-cache pages cached and unmapped and frees anon ones, a removal from the page cache frees
them),
or first *explodes* the pages it looks at into the folios and PTEs the stride would have made,
so the page-by-page code runs on them unchanged.

Invariants (`hugetlbsim.model.invariants` checks them): blocks never overlap each other or
single folios and PTEs; a page-cache block is cached, and its VMAs are shared, alive and cover
it; an anon block lies inside each of its private VMAs, and is in each one's index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hugetlbsim.model.folio import Folio, FolioBlock, FolioBlocks, free_huge_pages
from hugetlbsim.model.vma import VMA, Pte

if TYPE_CHECKING:
    from hugetlbsim.model.inode import Inode

__all__ = ["cut", "explode", "explode_anon", "free_block", "split_at", "take_block",
           "vma_blocks", "write_protect"]


def split_at(blocks: FolioBlocks, block: FolioBlock, at: int) -> FolioBlock:
    """Cut ``block`` at ``at`` (strictly inside it); return the upper part, put in every index
    holding ``block`` (``blocks`` for a page-cache block, each mapper's for an anon one)."""
    upper = FolioBlock(at, block.end, block.hstate, block.spool, block.cgroup, block.memcg,
                       list(block.vmas), block.writable, block.anon, block.restore_reserve,
                       block.cgroup_rsvd)
    homes = [v.blocks for v in block.vmas] if block.anon else [blocks]
    for home in homes:
        home.pages -= block.end - at
    block.end = at
    for home in homes:
        home.add(upper)
    return upper


def cut(blocks: FolioBlocks, start: int, end: int) -> list[FolioBlock]:
    """Split the blocks straddling ``start`` or ``end``; return those inside, in order."""
    for at in (start, end):
        block = blocks.at(at)
        if block is not None and block.first < at:
            split_at(blocks, block, at)
    return blocks.overlapping(start, end)


def _folio(block: FolioBlock) -> Folio:
    return Folio(block.hstate, block.spool, block.cgroup, block.cgroup_rsvd,
                 block.restore_reserve, block.memcg, block.anon, not block.anon,
                 len(block.vmas))


def explode(inode: Inode, start: int, end: int) -> None:
    """Turn the page-cache block pages in file indexes ``[start, end)`` into single folios
    and their PTEs in every VMA mapping them."""
    blocks = inode.blocks
    if not blocks:
        return
    cache = inode.page_cache
    for block in cut(blocks, start, end):
        blocks.remove(block)
        maps = [(v.ptes, v.start - v.pgoff) for v in block.vmas]
        writable = block.writable
        for index in range(block.first, block.end):
            folio = cache[index] = _folio(block)
            for ptes, shift in maps:
                ptes[index + shift] = Pte(folio, writable)


def explode_anon(vma: VMA, start: int, end: int) -> None:
    """Turn the anon block pages in virtual pages ``[start, end)`` of ``vma`` into single
    folios and their PTEs in every VMA mapping them."""
    for block in cut(vma.blocks, start, end) if vma.blocks else []:
        for v in block.vmas:
            v.blocks.remove(block)
        tables, writable = [v.ptes for v in block.vmas], block.writable
        for page in range(block.first, block.end):
            folio = _folio(block)
            for ptes in tables:
                ptes[page] = Pte(folio, writable)


def vma_blocks(vma: VMA, start: int, end: int, split: bool = False) -> list[FolioBlock]:
    """The page-cache blocks ``vma`` maps in its virtual pages ``[start, end)`` (split at
    the edges if ``split``); only a shared VMA maps any."""
    blocks = vma.inode.blocks
    if not blocks or not vma.shared:
        return []
    lo, hi = vma.file_index(start), vma.file_index(end)
    found = cut(blocks, lo, hi) if split else blocks.overlapping(lo, hi)
    return [b for b in found if vma in b.vmas]


def write_protect(vma: VMA) -> None:
    """mprotect(PROT_READ) of ``vma``: the PTEs of its blocks become read-only; a block
    other VMAs map too is exploded instead (their PTEs keep their permission; the caller then
    write-protects ``vma``'s single PTEs, these included)."""
    for block in vma_blocks(vma, vma.start, vma.end):
        if block.writable and len(block.vmas) > 1:
            explode(vma.inode, block.first, block.end)
        block.writable = False
    for block in list(vma.blocks):
        if block.writable and len(block.vmas) > 1:
            explode_anon(vma, block.first, block.end)
        block.writable = False


def take_block(inode: Inode, block: FolioBlock) -> None:
    """An unmapped block's pages leave the page cache (each page's last reference)."""
    assert not block.vmas, "a mapped block leaves the page cache"
    inode.blocks.remove(block)
    inode.cached.remove_range(block.first, block.end)
    inode.cache_version += block.pages


def free_block(inode: Inode, block: FolioBlock) -> None:
    """`take_block`, then free its pages in turn."""
    take_block(inode, block)
    free_huge_pages(block, block.pages)
