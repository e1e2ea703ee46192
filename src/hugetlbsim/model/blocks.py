"""Runs of alike page-cache pages, kept as one object until a page differs (`FolioBlock`).

A stride of shared faults (`hugetlbsim.model.bulk`) makes pages that are all alike: in the
page cache, allocated from a reservation, charged to one cgroup (and memory cgroup), mapped by
one VMA (mapcount 1) with one write permission.  Holding each as a `Folio` with its `Pte`
costs a few hundred bytes and a microsecond a page; a block holds them in O(1).  The kernel
has no such thing: a block is only a compressed form of the folios it stands for, and each
flow either handles a whole block exactly as it would handle each of its pages (a zap leaves
them cached and unmapped, a removal from the page cache frees them), or first *explodes* the
pages it looks at into the folios and PTEs the stride would have made (`explode`), so the
page-by-page code runs on them unchanged.

Invariants (`hugetlbsim.model.invariants` checks them): blocks of one inode never overlap
each other or the inode's single folios; every page of a block is cached; a block's VMA is
shared, alive, covers the block, and holds no single PTE over it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hugetlbsim.model.folio import Folio, free_huge_pages
from hugetlbsim.model.hstate import HState
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.subpool import HugepageSubpool
from hugetlbsim.model.vma import VMA, Pte

if TYPE_CHECKING:
    from hugetlbsim.model.inode import Inode

__all__ = ["FolioBlock", "FolioBlocks", "cut", "explode", "explode_vma", "free_block",
           "split_at", "take_block", "vma_blocks"]


@dataclass(eq=False, slots=True)
class FolioBlock:
    """File indexes ``[first, end)``: cached pages alike in everything a folio records.

    Each stands for ``Folio(hstate, spool, cgroup, None, memcg=memcg, in_page_cache=True,
    mapcount=1 if vma else 0)`` (no reservation charge, no pending restore, not anon) and, when
    ``vma`` maps them, for its ``Pte(folio, writable)``.
    """

    first: int
    end: int
    hstate: HState
    spool: HugepageSubpool | None
    cgroup: HugetlbCgroup
    memcg: HugetlbCgroup | None
    vma: VMA | None
    writable: bool

    @property
    def pages(self) -> int:
        return self.end - self.first


class FolioBlocks:
    """An inode's blocks, sorted by first index, with their page total."""

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


def split_at(blocks: FolioBlocks, block: FolioBlock, at: int) -> FolioBlock:
    """Cut ``block`` at index ``at`` (strictly inside it); return the upper part."""
    upper = FolioBlock(at, block.end, block.hstate, block.spool, block.cgroup, block.memcg,
                       block.vma, block.writable)
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
        args = (block.hstate, block.spool, block.cgroup, None)
        if vma is None:
            for index in range(block.first, block.end):
                cache[index] = Folio(*args, memcg=block.memcg, in_page_cache=True)
            continue
        ptes, writable, shift = vma.ptes, block.writable, vma.start - vma.pgoff
        for index in range(block.first, block.end):
            folio = Folio(*args, memcg=block.memcg, in_page_cache=True, mapcount=1)
            cache[index] = folio
            ptes[index + shift] = Pte(folio, writable)


def vma_blocks(vma: VMA, start: int, end: int, split: bool = False) -> list[FolioBlock]:
    """The blocks ``vma`` maps in its virtual pages ``[start, end)`` (split at the edges if
    ``split``)."""
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


def take_block(inode: Inode, block: FolioBlock) -> None:
    """An unmapped block's pages leave the page cache (each page's last reference)."""
    assert block.vma is None, "a mapped block leaves the page cache"
    inode.blocks.remove(block)
    inode.cached.remove_range(block.first, block.end)
    inode.cache_version += block.pages


def free_block(inode: Inode, block: FolioBlock) -> None:
    """`take_block`, then free its pages in turn."""
    take_block(inode, block)
    free_huge_pages(block.hstate, block.spool, block.cgroup, block.memcg, block.pages)
