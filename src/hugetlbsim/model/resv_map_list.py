"""The kernel's O(n) list walk of `file_region`s, kept as the reference for `ResvMap`.

This is the reference the tests and the benchmark compare `hugetlbsim.model.resv_map.ResvMap` with.
It keeps the regions in one Python list of mutable ``[from, to, info]`` records and walks it
from the head on every call, exactly like the kernel walks its linked list of `file_region`s,
so every call costs O(n).  It deliberately has no cleverness: each method follows the step list
of its spec section (2.2 to 2.8) so that it can be read side by side with the spec.

It reuses only the interface types of `hugetlbsim.model.resv_map` (the allocator, the exception and
the result tuples), never its logic.
"""

from __future__ import annotations

from dataclasses import dataclass

from hugetlbsim.model.resv_map import (
    POLICIES,
    EntryAllocator,
    FileRegion,
    Policy,
    RegionDel,
    RegionNoMemory,
)

__all__ = ["BaselineResvMap", "Rg"]


@dataclass(slots=True)
class Rg:
    """One `file_region`, mutable like the kernel's."""

    from_: int
    to: int
    info: object


class BaselineResvMap:
    """`struct resv_map` as a Python list walked from the head."""

    def __init__(self, policy: Policy = "6.18", allocator: EntryAllocator | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown region policy {policy!r}")
        self.policy: Policy = policy
        self.allocator = allocator if allocator is not None else EntryAllocator()
        self.list: list[Rg] = []  # sorted by from_
        self.adds_in_progress = 0
        self.region_cache_count = 1  # resv_map_alloc pre-allocates one entry (2.1)

    def __len__(self) -> int:
        return len(self.list)

    def regions(self) -> list[FileRegion]:
        return [FileRegion(r.from_, r.to, r.info) for r in self.list]

    # -- 2.3: insertion and coalescing -----------------------------------------------------

    def _same_info(self, a: object, b: object) -> bool:
        """`has_same_uncharge_info`, or "anything merges" for the legacy policy."""
        return self.policy == "legacy" or a == b

    def _insert(self, pos: int, f: int, t: int, info: object) -> int:
        """`hugetlb_resv_map_add`: take a cache entry, link it at ``pos``, coalesce.

        Returns how many entries before the walk's current entry (the one that was at ``pos``)
        were freed by coalescing, so the walk can find its place again.
        """
        assert self.region_cache_count > 0, "region cache empty during an add"
        self.region_cache_count -= 1
        lst = self.list
        lst.insert(pos, Rg(f, t, info))
        if self.policy == "v7":
            return 0
        # coalesce_file_region: first with the previous entry...
        freed = 0
        rg = lst[pos]
        if pos > 0 and lst[pos - 1].to == rg.from_ and self._same_info(lst[pos - 1].info, rg.info):
            lst[pos - 1].to = rg.to  # the previous entry grows; the new one is freed
            del lst[pos]
            pos -= 1
            rg = lst[pos]
            freed += 1
        # ...then with the next one.
        if pos + 1 < len(lst) and lst[pos + 1].from_ == rg.to and self._same_info(
            lst[pos + 1].info, rg.info
        ):
            lst[pos + 1].from_ = rg.from_  # the next entry grows leftwards; rg is freed
            del lst[pos]
            freed += 1
        return freed

    # -- 2.2: add_reservation_in_range -----------------------------------------------------

    def _add_in_range(self, f: int, t: int, info: object, count_only: bool) -> tuple[int, int]:
        """Walk the list once; return (pages in gaps, gaps).  Inserts unless ``count_only``."""
        last = f
        add = 0
        gaps = 0
        pos = 0
        while pos < len(self.list):
            rg = self.list[pos]
            if rg.from_ < f:  # step 1: starts left of the range
                last = max(last, rg.to)
                pos += 1
                continue
            if rg.from_ >= t:  # step 2: the tail gap goes just before this entry
                break
            if rg.from_ > last:  # step 3: gap [last, rg.from_) goes just before this entry
                add += rg.from_ - last
                gaps += 1
                if not count_only:
                    pos += 1 - self._insert(pos, last, rg.from_, info)
            last = rg.to  # step 4 (rg.to never changes by coalescing on its left)
            pos += 1
        if last < t:  # the tail gap, before the stop entry or at the list tail
            add += t - last
            gaps += 1
            if not count_only:
                self._insert(pos, last, t, info)
        return add, gaps

    # -- 2.4 to 2.8: the protocol ----------------------------------------------------------

    def _allocate_entries(self, needed: int) -> None:
        """`allocate_file_region_entries`: fill the cache up to adds_in_progress + needed."""
        while self.region_cache_count < self.adds_in_progress + needed:
            to_allocate = self.adds_in_progress + needed - self.region_cache_count
            if not self.allocator.allocate(to_allocate):
                raise RegionNoMemory(f"baseline: cannot allocate {to_allocate} entries")
            self.region_cache_count += to_allocate

    def region_chg(self, f: int, t: int) -> tuple[int, int]:
        chg, needed = self._add_in_range(f, t, None, count_only=True)
        if needed == 0:
            needed = 1
        self._allocate_entries(needed)
        self.adds_in_progress += needed
        return chg, needed

    def region_add(self, f: int, t: int, regions_needed: int, info: object = None) -> int:
        while True:  # "retry"
            _, actual = self._add_in_range(f, t, None, count_only=True)
            extra = actual - regions_needed
            if extra > 0 and self.region_cache_count < self.adds_in_progress + extra:
                self._allocate_entries(extra)  # may raise; the caller must region_abort
                continue
            break
        add, _ = self._add_in_range(f, t, info, count_only=False)
        self.adds_in_progress -= regions_needed
        return add

    def region_abort(self, f: int, t: int, regions_needed: int) -> None:
        self.adds_in_progress -= regions_needed

    def region_del(self, f: int, t: int) -> RegionDel:
        have_spare = False  # an entry kmalloc'ed on an earlier pass of the walk
        while True:  # "retry"
            deleted = 0
            uncharges: list[tuple[object, int]] = []
            restart = False
            pos = 0
            while pos < len(self.list):
                rg = self.list[pos]
                if rg.to <= f and (rg.to != rg.from_ or rg.to != f):
                    pos += 1
                    continue
                if rg.from_ >= t:
                    break
                if f > rg.from_ and t < rg.to:  # split
                    if not have_spare and self.region_cache_count > self.adds_in_progress:
                        self.region_cache_count -= 1
                        have_spare = True
                    if not have_spare:
                        if not self.allocator.allocate(1):
                            raise RegionNoMemory("baseline: no entry for the split")
                        have_spare = True
                        restart = True
                        break
                    deleted += t - f
                    uncharges.append((rg.info, t - f))
                    self.list.insert(pos + 1, Rg(t, rg.to, rg.info))
                    rg.to = f
                    have_spare = False
                    break
                if f <= rg.from_ and t >= rg.to:  # remove the whole region
                    deleted += rg.to - rg.from_
                    uncharges.append((rg.info, rg.to - rg.from_))
                    del self.list[pos]
                    continue
                if f <= rg.from_:  # trim the front
                    deleted += t - rg.from_
                    uncharges.append((rg.info, t - rg.from_))
                    rg.from_ = t
                else:  # trim the back
                    deleted += rg.to - f
                    uncharges.append((rg.info, rg.to - f))
                    rg.to = f
                pos += 1
            if not restart:
                return RegionDel(deleted, uncharges)

    def region_count(self, f: int, t: int) -> int:
        total = 0
        for rg in self.list:
            if rg.to <= f:
                continue
            if rg.from_ >= t:
                break
            total += min(rg.to, t) - max(rg.from_, f)
        return total
