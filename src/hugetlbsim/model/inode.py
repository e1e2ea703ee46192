"""hugetlbfs inodes: size, page cache, reservation map (fs/hugetlbfs/inode.c).

Regular hugetlbfs files, memfd files, SysV shm segments and the hidden files behind anonymous
MAP_HUGETLB mappings are all inodes on some hugetlbfs mount; only files of a user mount have a
subpool.  The inode's `ResvMap` has *shared* meaning: an index inside a region is reserved, or
was and its page is in the page cache.  `remove_inode_hugepages` and `hugetlb_unreserve_pages`
are the two halves of truncation, hole punch and eviction.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

from hugetlbsim.model.blocks import cut, free_block, take_block
from hugetlbsim.model.folio import Folio, FolioBlocks, free_huge_folio, free_huge_pages
from hugetlbsim.model.hstate import HState
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.resv_map import LONG_MAX, ResvMap
from hugetlbsim.model.subpool import HugepageSubpool
from hugetlbsim.model.vma import VMA

__all__ = [
    "CacheRuns", "IMmap", "Inode", "hugetlb_add_to_page_cache", "hugetlb_unreserve_pages",
    "remove_inode_hugepages", "uncharge_file_regions", "vma_interval_tree_insert"
]


class CacheRuns:
    """The page cache's indexes as sorted, maximal half-open runs ``[start, end)``.

    Kept beside the page-cache dict as pages come and go, O(log n + memmove) each, so that a
    range's cached indexes are found in O(log n + pages in it), whatever else the file caches.
    Each run also has its ``[start, end]`` list, replaced (never changed) when the run changes,
    so a snapshot's list of runs is one shallow copy.
    """

    __slots__ = ("ends", "pairs", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.pairs: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.starts)

    def _set(self, k: int, start: int, end: int) -> None:
        self.starts[k], self.ends[k], self.pairs[k] = start, end, [start, end]

    def _insert(self, k: int, start: int, end: int) -> None:
        self.starts.insert(k, start)
        self.ends.insert(k, end)
        self.pairs.insert(k, [start, end])

    def _delete(self, k: int) -> None:
        del self.starts[k], self.ends[k], self.pairs[k]

    def add(self, index: int) -> None:
        """``index`` joins the cache (it was not there)."""
        self.add_range(index, index + 1)

    def add_range(self, start: int, end: int) -> None:
        """Indexes ``[start, end)`` join the cache (none of them was there)."""
        starts, ends = self.starts, self.ends
        k = bisect_right(starts, start) - 1
        left = k >= 0 and ends[k] == start
        right = k + 1 < len(starts) and starts[k + 1] == end
        if left and right:
            self._set(k, starts[k], ends[k + 1])
            self._delete(k + 1)
        elif left:
            self._set(k, starts[k], end)
        elif right:
            self._set(k + 1, start, ends[k + 1])
        else:
            self._insert(k + 1, start, end)

    def run_end(self, index: int) -> int:
        """The end of the run holding ``index`` (``index`` itself when it is not cached)."""
        k = bisect_right(self.starts, index) - 1
        return self.ends[k] if k >= 0 and self.ends[k] > index else index

    def next_cached(self, index: int) -> int | None:
        """The first cached index at or after ``index``, if any."""
        starts, ends = self.starts, self.ends
        k = bisect_right(starts, index) - 1
        if k >= 0 and ends[k] > index:
            return index
        return starts[k + 1] if k + 1 < len(starts) else None

    def remove(self, index: int) -> None:
        """``index`` leaves the cache (it was there)."""
        self.remove_range(index, index + 1)

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.next_cached(index) == index

    def remove_range(self, start: int, end: int) -> None:
        """Indexes ``[start, end)`` leave the cache (all were there, in one run)."""
        k = bisect_right(self.starts, start) - 1
        lo, hi = self.starts[k], self.ends[k]
        assert lo <= start and end <= hi, "removing indexes that are not cached"
        if lo == start and hi == end:
            self._delete(k)
        elif lo == start:
            self._set(k, end, hi)
        elif hi == end:
            self._set(k, lo, start)
        else:
            self._set(k, lo, start)
            self._insert(k + 1, end, hi)

    def spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """The cached runs met by ``[start, end)``, clipped to it, in order."""
        starts, ends = self.starts, self.ends
        k = max(bisect_right(starts, start) - 1, 0)
        found: list[tuple[int, int]] = []
        while k < len(starts) and starts[k] < end:
            lo, hi = max(starts[k], start), min(ends[k], end)
            if lo < hi:
                found.append((lo, hi))
            k += 1
        return found

    def runs(self) -> list[list[int]]:
        """``[[start, end], ...]``: a new list of the runs' lists (never changed later)."""
        return list(self.pairs)


_GAP = 1 << 64
"""Room left between the order keys of consecutive VMAs of one first index (`IMmap`)."""


class IMmap:
    """A file's i_mmap: its VMAs in the interval tree's order, found and removed in O(log n).

    The order is by first file index, a new VMA going after those with the same index, a fork
    child's right after its parent's (`vma_interval_tree_insert`).  Each VMA holds an order key
    ``(first index, position)``; positions within one first index leave gaps, a VMA put right
    after another takes the middle of the gap, and a gap used up renumbers that index's VMAs
    (without changing their order).  It reads as the list it replaces: iteration in order,
    ``len``, truth, ``in``, ``index``, ``remove``.
    """

    __slots__ = ("keys", "order", "vmas")

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []
        self.vmas: list[VMA] = []
        self.order: dict[VMA, tuple[int, int]] = {}

    def __iter__(self) -> Iterator[VMA]:
        return iter(self.vmas)

    def __len__(self) -> int:
        return len(self.vmas)

    def __bool__(self) -> bool:
        return bool(self.vmas)

    def __contains__(self, vma: object) -> bool:
        return vma in self.order

    def __getitem__(self, position: int) -> VMA:
        return self.vmas[position]

    def __repr__(self) -> str:
        return f"IMmap({self.vmas!r})"

    def index(self, vma: VMA) -> int:
        """Where ``vma`` is in the order."""
        if vma not in self.order:
            raise ValueError("the VMA is not in this i_mmap")
        return bisect_left(self.keys, self.order[vma])

    def remove(self, vma: VMA) -> None:
        at = self.index(vma)
        del self.keys[at], self.vmas[at], self.order[vma]

    def _put(self, at: int, key: tuple[int, int], vma: VMA) -> None:
        self.keys.insert(at, key)
        self.vmas.insert(at, vma)
        self.order[vma] = key

    def append_in_order(self, vma: VMA, first: int) -> None:
        """Link ``vma`` (first file index ``first``) after every VMA of that index."""
        at = bisect_left(self.keys, (first + 1, -1))
        last = self.keys[at - 1] if at and self.keys[at - 1][0] == first else None
        self._put(at, (first, 0 if last is None else last[1] + _GAP), vma)

    def insert_after(self, vma: VMA, after: VMA) -> None:
        """Link ``vma`` right after ``after`` (fork), which has the same first index."""
        at = self.index(after) + 1
        first, low = self.keys[at - 1]
        nxt = self.keys[at] if at < len(self.keys) and self.keys[at][0] == first else None
        if nxt is None:
            self._put(at, (first, low + _GAP), vma)
            return
        if nxt[1] - low < 2:
            self._renumber(first)
            at = self.index(after) + 1
            first, low = self.keys[at - 1]
            nxt = self.keys[at]
        self._put(at, (first, (low + nxt[1]) // 2), vma)

    def _renumber(self, first: int) -> None:
        """Spread the positions of index ``first`` ``_GAP`` apart again, order kept."""
        lo = bisect_left(self.keys, (first, -1))
        hi = bisect_left(self.keys, (first + 1, -1))
        for n, at in enumerate(range(lo, hi)):
            key = (first, n * _GAP)
            self.keys[at] = key
            self.order[self.vmas[at]] = key


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
    """The cached pages held as single folios (the rest are in `blocks`)."""
    linked: bool = True
    files: int = 0
    """Open file references: the scenario's handle, shm ids, hidden files of anon mappings."""
    i_mmap: IMmap = field(default_factory=IMmap)
    evicted: bool = False
    cache_version: int = 0
    """Bumped whenever `page_cache` gains or loses a page (snapshots reuse what is unchanged)."""
    cached: CacheRuns = field(default_factory=CacheRuns)
    """The page cache's indexes (`page_cache`'s and the blocks') as runs, kept with them."""
    blocks: FolioBlocks = field(default_factory=FolioBlocks)
    """Cached pages held as blocks of alike folios (`hugetlbsim.model.blocks`), not in
    `page_cache`."""
    serial: int = 0
    """Its rank in the system's creation order (eviction of several goes in that order)."""

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
        inode.i_mmap.insert_after(vma, after)
    else:
        inode.i_mmap.append_in_order(vma, vma.file_index(vma.start))


def hugetlb_add_to_page_cache(inode: Inode, index: int, folio: Folio) -> None:
    """A new page joins the page cache: it now holds its reservation for good."""
    folio.in_page_cache = True
    folio.restore_reserve = False
    inode.page_cache[index] = folio
    inode.cached.add(index)
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
    indexes without a page keep their reservation.  Pages go in index order, a block's pages
    (unmapped: the callers zapped the range first) as a whole where nothing comes between.
    """
    truncate = end == LONG_MAX
    freed = 0
    cache = inode.page_cache
    blocks = cut(inode.blocks, start, end)
    k = 0
    for lo, hi in inode.cached.spans(start, end):
        index = lo
        while index < hi:
            block = blocks[k] if k < len(blocks) else None
            if block is not None and block.first == index:
                k += 1
                index = block.end
                if truncate:
                    free_block(inode, block)
                    freed += block.pages
                    continue
                take_block(inode, block)
                spool = block.spool
                if (spool is None or spool.min_hpages == -1) and (
                        inode.resv_map.allocator.never_fails):
                    # Each page: free it, then drop its index (put nothing back: it is in the
                    # map); without a min_size the two kinds of steps commute.
                    free_huge_pages(block, block.pages)
                    freed += block.pages
                    deleted = inode.resv_map.region_del_each(block.first, block.end)
                    uncharge_file_regions(deleted.uncharges)
                    inode.i_blocks -= block.pages
                    continue
                for page in range(block.first, block.end):
                    free_huge_pages(block, 1)
                    freed += 1
                    hugetlb_unreserve_pages(inode, page, page + 1, 1)
                continue
            stop = hi if block is None else min(hi, block.first)
            for page in range(index, stop):
                folio = cache.pop(page)
                inode.cached.remove(page)
                inode.cache_version += 1
                folio.in_page_cache = False
                if folio.unused:
                    free_huge_folio(folio)
                freed += 1
                if not truncate:
                    hugetlb_unreserve_pages(inode, page, page + 1, 1)
            index = stop
    if truncate:
        hugetlb_unreserve_pages(inode, start, LONG_MAX, freed)
