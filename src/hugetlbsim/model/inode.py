"""hugetlbfs inodes: size, page cache, reservation map (fs/hugetlbfs/inode.c).

Regular hugetlbfs files, memfd files, SysV shm segments and the hidden files behind anonymous
MAP_HUGETLB mappings are all inodes on some hugetlbfs mount; only files of a user mount have a
subpool.  The inode's `ResvMap` has *shared* meaning: an index inside a region is reserved, or
was and its page is in the page cache.  `remove_inode_hugepages` and `hugetlb_unreserve_pages`
are the two halves of truncation, hole punch and eviction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hugetlbsim.model.folio import Folio, free_huge_folio
from hugetlbsim.model.hstate import HState
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.resv_map import LONG_MAX, ResvMap
from hugetlbsim.model.subpool import HugepageSubpool
from hugetlbsim.model.vma import VMA

__all__ = [
    "Inode", "hugetlb_add_to_page_cache", "hugetlb_unreserve_pages", "remove_inode_hugepages",
    "uncharge_file_regions", "vma_interval_tree_insert"
]


@dataclass(eq=False)
class Inode:
    """One hugetlbfs inode and what keeps it alive (links, open files, mappings)."""

    name: str
    hstate: HState
    spool: HugepageSubpool | None
    resv_map: ResvMap
    i_size: int = 0
    i_blocks: int = 0
    page_cache: dict[int, Folio] = field(default_factory=dict)
    linked: bool = True
    files: int = 0
    """Open file references: the scenario's handle, shm ids, hidden files of anon mappings."""
    i_mmap: list[VMA] = field(default_factory=list)
    evicted: bool = False
    cache_version: int = 0
    """Bumped whenever `page_cache` gains or loses a page (snapshots reuse what is unchanged)."""

    @property
    def in_use(self) -> bool:
        return self.linked or self.files > 0 or bool(self.i_mmap)


def vma_interval_tree_insert(inode: Inode, vma: VMA, after: VMA | None = None) -> None:
    """Link a VMA into the file's i_mmap, kept in the interval tree's order.

    The tree is ordered by first file index, a new node going after those with the same index;
    fork links the child's VMA right after its parent's (`vma_interval_tree_insert_after`).
    The order decides which VMA a truncate or hole punch zaps (and frees) first.
    """
    if after is not None:
        inode.i_mmap.insert(inode.i_mmap.index(after) + 1, vma)
        return
    key = vma.file_index(vma.start)
    pos = len(inode.i_mmap)
    while pos and inode.i_mmap[pos - 1].file_index(inode.i_mmap[pos - 1].start) > key:
        pos -= 1
    inode.i_mmap.insert(pos, vma)


def hugetlb_add_to_page_cache(inode: Inode, index: int, folio: Folio) -> None:
    """A new page joins the page cache: it now holds its reservation for good."""
    folio.in_page_cache = True
    folio.restore_reserve = False
    inode.page_cache[index] = folio
    inode.i_blocks += 1
    inode.cache_version += 1


def hugetlb_unreserve_pages(inode: Inode, start: int, end: int, freed: int) -> None:
    """Drop the map's regions in ``[start, end)`` and the reservations nobody consumed.

    Regions carrying mmap-time cgroup info uncharge that cgroup's reservation counter.  Pages
    that were instantiated were credited to the subpool when freed, so only ``chg - freed``
    goes back through the subpool.
    """
    deleted = inode.resv_map.region_del(start, end)
    uncharge_file_regions(deleted.uncharges)
    inode.i_blocks -= freed
    spool = inode.spool
    gbl = deleted.pages - freed if spool is None else spool.put_pages(deleted.pages - freed)
    inode.hstate.hugetlb_acct_memory(-gbl)


def uncharge_file_regions(uncharges: list[tuple[object, int]]) -> None:
    """`hugetlb_cgroup_uncharge_file_region` for each region that recorded a cgroup."""
    for info, pages in uncharges:
        if isinstance(info, HugetlbCgroup):
            info.rsvd.uncharge(pages)


def remove_inode_hugepages(inode: Inode, start: int, end: int = LONG_MAX) -> None:
    """Remove the page cache pages in ``[start, end)``; free those no longer mapped.

    ``end == LONG_MAX`` is truncation or eviction: all regions from ``start`` go at the end.
    Otherwise (hole punch) each removed page drops its own index from the map, and reserved
    indexes without a page keep their reservation.
    """
    truncate = end == LONG_MAX
    freed = 0
    cache = inode.page_cache
    # The cached indexes in [start, end), in order: from the range when it is the smaller.
    indexes = ([i for i in range(start, end) if i in cache] if end - start < len(cache)
               else sorted(i for i in cache if start <= i < end))
    for index in indexes:
        folio = inode.page_cache.pop(index)
        inode.cache_version += 1
        folio.in_page_cache = False
        if folio.unused:
            free_huge_folio(folio)
        freed += 1
        if not truncate:
            hugetlb_unreserve_pages(inode, index, index + 1, 1)
    if truncate:
        hugetlb_unreserve_pages(inode, start, LONG_MAX, freed)
