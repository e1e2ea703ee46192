"""Runs of alike pages, kept as one object until a page differs (`FolioBlock`).

A stride of faults (`hugetlbsim.model.bulk`) makes pages that are all alike: allocated from a
reservation, charged to one cgroup (and memory cgroup), mapped by one VMA (mapcount 1) with
one write permission, and either all in the page cache (a shared mapping's stride: the block
lives in the inode's `blocks`, by file index) or all anon (a private owner's stride: in the
VMA's `blocks`, by virtual page).  Holding each as a `Folio` with its `Pte` costs a few hundred
bytes and a microsecond a page; a block holds them in O(1).  The kernel has no such thing: a
block is only a compressed form of the folios it stands for, and each flow either handles a
whole block exactly as it would handle each of its pages in turn (a zap leaves page-cache
pages cached and unmapped and frees anon ones, a removal from the page cache frees them), or
first *explodes* the pages it looks at into the folios and PTEs the stride would have made,
so the page-by-page code runs on them unchanged.

Invariants (`hugetlbsim.model.invariants` checks them): blocks never overlap each other or
single folios and PTEs; a page-cache block is cached, and its VMA, if any, is shared, alive
and covers it; an anon block lies inside its private VMA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hugetlbsim.model.folio import Folio, FolioBlock, FolioBlocks, free_huge_pages
from hugetlbsim.model.vma import VMA, Pte

if TYPE_CHECKING:
    from hugetlbsim.model.inode import Inode

__all__ = ["cut", "explode", "explode_anon", "explode_vma", "free_block", "split_at",
           "take_block", "vma_blocks"]


def split_at(blocks: FolioBlocks, block: FolioBlock, at: int) -> FolioBlock:
    """Cut ``block`` at ``at`` (strictly inside it); return the upper part."""
    upper = FolioBlock(at, block.end, block.hstate, block.spool, block.cgroup, block.memcg,
                       block.vma, block.writable, block.anon, block.restore_reserve,
                       block.cgroup_rsvd)
    blocks.pages -= block.end - at
    block.end = at
    blocks.add(upper)
    return upper


def cut(blocks: FolioBlocks, start: int, end: int) -> list[FolioBlock]:
    """Split the blocks straddling ``start`` or ``end``; return those inside, in order."""
    for at in (start, end):
        block = blocks.at(at)
        if block is not None and block.first < at:
            split_at(blocks, block, at)
    return blocks.overlapping(start, end)


def explode(inode: Inode, start: int, end: int) -> None:
    """Turn the block pages in file indexes ``[start, end)`` into single folios and PTEs."""
    blocks = inode.blocks
    if not blocks:
        return
    cache = inode.page_cache
    for block in cut(blocks, start, end):
        blocks.remove(block)
        vma = block.vma
        args = (block.hstate, block.spool, block.cgroup, block.cgroup_rsvd)
        if vma is None:
            for index in range(block.first, block.end):
                cache[index] = Folio(*args, memcg=block.memcg, in_page_cache=True)
            continue
        ptes, writable, shift = vma.ptes, block.writable, vma.start - vma.pgoff
        for index in range(block.first, block.end):
            folio = Folio(*args, memcg=block.memcg, in_page_cache=True, mapcount=1)
            cache[index] = folio
            ptes[index + shift] = Pte(folio, writable)


def explode_anon(vma: VMA, start: int, end: int) -> None:
    """Turn the anon block pages in virtual pages ``[start, end)`` of ``vma`` into single
    folios and PTEs."""
    blocks, ptes = vma.blocks, vma.ptes
    for block in cut(blocks, start, end) if blocks else []:
        blocks.remove(block)
        args = (block.hstate, block.spool, block.cgroup, block.cgroup_rsvd)
        for page in range(block.first, block.end):
            ptes[page] = Pte(Folio(*args, memcg=block.memcg, anon=True, mapcount=1),
                             block.writable)


def vma_blocks(vma: VMA, start: int, end: int, split: bool = False) -> list[FolioBlock]:
    """The page-cache blocks ``vma`` maps in its virtual pages ``[start, end)`` (split at
    the edges if ``split``)."""
    blocks = vma.inode.blocks
    if not blocks:
        return []
    lo, hi = vma.file_index(start), vma.file_index(end)
    found = cut(blocks, lo, hi) if split else blocks.overlapping(lo, hi)
    return [b for b in found if b.vma is vma]


def explode_vma(vma: VMA) -> None:
    """Explode every block ``vma`` maps (before a flow that walks its PTEs one by one)."""
    for block in vma_blocks(vma, vma.start, vma.end):
        explode(vma.inode, block.first, block.end)
    explode_anon(vma, vma.start, vma.end)


def take_block(inode: Inode, block: FolioBlock) -> None:
    """An unmapped block's pages leave the page cache (each page's last reference)."""
    assert block.vma is None, "a mapped block leaves the page cache"
    inode.blocks.remove(block)
    inode.cached.remove_range(block.first, block.end)
    inode.cache_version += block.pages


def free_block(inode: Inode, block: FolioBlock) -> None:
    """`take_block`, then free its pages in turn."""
    take_block(inode, block)
    free_huge_pages(block, block.pages)
