"""A process's pieces of one mapping: finding, splitting and carving VMAs (`__split_vma`).

munmap and mprotect act on a range of a mapping: the VMAs straddling the range's ends are split
first, and the pieces inside are what the operation then changes.
"""

from __future__ import annotations

from hugetlbsim.model.blocks import cut, vma_blocks
from hugetlbsim.model.inode import vma_interval_tree_insert
from hugetlbsim.model.vma import VMA

__all__ = ["carve", "piece", "split_vma"]


def piece(pieces: list[VMA], page: int) -> VMA | None:
    """The VMA among ``pieces`` that maps virtual page ``page``, if any."""
    return next((v for v in pieces if v.start <= page < v.end), None)


def carve(pieces: list[VMA], start: int, end: int) -> list[VMA]:
    """Split ``pieces`` at ``start`` and ``end`` (in place); return those inside, in order."""
    for at in (start, end):
        vma = piece(pieces, at)
        if vma is not None and vma.start < at:
            pieces.append(split_vma(vma, at))
    return sorted((v for v in pieces if start <= v.start and v.end <= end),
                  key=lambda v: v.start)


def split_vma(vma: VMA, at: int) -> VMA:
    """Split a VMA at virtual page ``at``: the new upper piece shares the reservation map.

    `__split_vma` links the new piece into the file's i_mmap and removes and re-inserts the
    original, so both pieces go after every other VMA with the same first index (fuzz seed
    3928: that order decides which VMA a truncate zaps first).
    """
    upper = VMA(vma.mm, vma.inode, at, vma.end, vma.file_index(at), vma.shared, vma.noreserve,
                vma.writable, vma.maywrite, vma.resv, vma.owner, vma.unmapped)
    for block in vma_blocks(vma, at, vma.end, split=True):
        block.vmas[block.vmas.index(vma)] = upper
    for block in cut(vma.blocks, at, vma.end) if vma.blocks else []:
        vma.blocks.remove(block)
        block.vmas[block.vmas.index(vma)] = upper
        upper.blocks.add(block)
    upper.ptes = {p: pte for p, pte in vma.ptes.items() if p >= at}
    vma.ptes = {p: pte for p, pte in vma.ptes.items() if p < at}
    vma.end = at
    vma.inode.i_mmap.remove(vma)
    vma_interval_tree_insert(vma.inode, upper)
    vma_interval_tree_insert(vma.inode, vma)
    return upper
