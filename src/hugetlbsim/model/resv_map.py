"""The reservation map (`struct resv_map`) and its region protocol (mm/hugetlb.c).

A map is an ordered set of disjoint half-open huge-page ranges (`file_region`s), each with the
"uncharge info" naming the hugetlb cgroup whose reservation counter pays for it.  It changes
through a two-phase protocol: `region_chg` counts the missing pages of ``[f, t)`` and reserves
cache entries for the add (`adds_in_progress`), then `region_add` commits or `region_abort`
backs out.  `region_del` removes (splitting a range needs one spare entry, which can fail) and
`region_count` counts.  The map knows nothing of processes, pools or cgroups: it only reports
which infos lost how many pages.

Entry allocation goes through an `EntryAllocator`, so tests can make any kmalloc fail.  The
coalescing policy is per map: ``"6.18"`` merges a new entry with a touching neighbour only when
both carry the same uncharge info (`has_same_uncharge_info`), ``"v7"`` never merges (the seed
patch "hugetlb: disable region_add file_region coalescing"), ``"legacy"`` merges regardless of
info (the pre-v5.7 coalescing, when regions carried no info; the older chg/add bookkeeping with
its placeholder entry is not modelled).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

from hugetlbsim.model.region_store import Entry, RegionStore

__all__ = [
    "LONG_MAX",
    "POLICIES",
    "EntryAllocator",
    "FileRegion",
    "Policy",
    "RegionDel",
    "RegionNoMemory",
    "ResvMap"
]

LONG_MAX = 2**63 - 1
"""The end index truncation and eviction pass to `region_del`."""

Policy = Literal["6.18", "v7", "legacy"]
POLICIES: tuple[Policy, ...] = ("6.18", "v7", "legacy")


class FileRegion(NamedTuple):
    """One `file_region`: pages ``[from_, to)`` and the info of the cgroup to uncharge."""

    from_: int
    to: int
    info: object


class RegionNoMemory(Exception):
    """A `file_region` allocation failed: the call returns -ENOMEM, the map is unchanged."""


class EntryAllocator:
    """Allocates `file_region` entries (kmalloc), one call per entry.

    ``fail`` chooses which calls fail: a predicate on the 0-based call number, or a set of call
    numbers.  A batch is all or nothing, as in `allocate_file_region_entries`: when one entry of
    it fails, the entries already allocated in the batch are freed.
    """

    def __init__(self, fail: Callable[[int], bool] | Iterable[int] | None = None) -> None:
        if fail is None or callable(fail):
            self._fail = fail
        else:
            failing = frozenset(fail)
            self._fail = failing.__contains__
        self.calls = 0

    @property
    def never_fails(self) -> bool:
        return self._fail is None

    def allocate(self, n: int) -> bool:
        """Allocate ``n`` entries; False (nothing kept) if any of the calls fails."""
        for _ in range(n):
            call = self.calls
            self.calls += 1
            if self._fail is not None and self._fail(call):
                return False
        return True


class RegionDel(NamedTuple):
    """Result of `region_del`: pages removed and, per region touched, (info, pages) uncharged."""

    pages: int
    uncharges: list[tuple[object, int]]


class ResvMap:
    """`struct resv_map`: the regions, the region cache and `adds_in_progress`."""

    __slots__ = ("_store", "adds_in_progress", "allocator", "policy", "region_cache_count")

    def __init__(self, policy: Policy = "6.18", allocator: EntryAllocator | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown region policy {policy!r}: use one of {', '.join(POLICIES)}")
        self.policy: Policy = policy
        self.allocator = allocator if allocator is not None else EntryAllocator()
        self._store = RegionStore()
        self.adds_in_progress = 0
        # resv_map_alloc puts one entry in the cache at creation.
        self.region_cache_count = 1

    def __len__(self) -> int:
        return len(self._store)

    @property
    def version(self) -> int:
        """Changes whenever the regions change (a snapshot of them can be reused until then)."""
        return self._store.version

    def regions(self) -> list[FileRegion]:
        """A read-only snapshot of the regions, in order."""
        return [FileRegion(*entry) for entry in self._store]

    def region_lists(self, label: Callable[[object], object]) -> list[list[object]]:
        """The regions as new lists ``[from, to, label(info)]``, in order (what a snapshot
        shows, made at C speed)."""
        return self._store.export(label)

    # -- the protocol ----------------------------------------------------------------------

    def region_chg(self, f: int, t: int) -> tuple[int, int]:
        """Pages missing in ``[f, t)`` and entries the add will need (>= 1), reserving them.

        Raises `RegionNoMemory` when the cache cannot be filled.
        """
        _check_range(f, t)
        chg, needed = self._count_gaps(f, t)
        needed = max(needed, 1)
        self._allocate_file_region_entries(needed)
        self.adds_in_progress += needed
        return chg, needed

    def region_add(self, f: int, t: int, regions_needed: int, info: object = None) -> int:
        """Fill every gap of ``[f, t)`` with entries carrying ``info``; return pages added.

        ``regions_needed`` is what the matching `region_chg` reported.  If the map changed
        since then and more entries are needed, they are allocated first; if that fails,
        `RegionNoMemory` is raised with `adds_in_progress` untouched (the caller must
        `region_abort`).
        """
        _check_range(f, t)
        if regions_needed < 1 or regions_needed > self.adds_in_progress:
            raise ValueError(
                f"region_add({f}, {t}, {regions_needed}) without a matching region_chg")
        while True:
            _, actual = self._count_gaps(f, t)
            extra = actual - regions_needed
            if extra <= 0 or self.region_cache_count >= self.adds_in_progress + extra:
                break
            self._allocate_file_region_entries(extra)
        # Nothing missing (a fault on a reserved index): the walk would splice back what it
        # read, so the map is left as it is.
        added = self._fill_gaps(f, t, info) if actual else 0
        self.adds_in_progress -= regions_needed
        return added

    def region_abort(self, f: int, t: int, regions_needed: int) -> None:
        """Back out a `region_chg`: its cache entries stay in the cache for later use."""
        if regions_needed < 1 or regions_needed > self.adds_in_progress:
            raise ValueError(f"region_abort({f}, {t}, {regions_needed}) without a region_chg")
        self.adds_in_progress -= regions_needed

    def region_del(self, f: int, t: int) -> RegionDel:
        """Remove ``[f, t)``: whole removals, trims, or a split in the middle of one region.

        A split needs a spare entry: from the cache only if it holds more than the adds in
        progress were promised, else from the allocator; on failure `RegionNoMemory` is raised
        and the map is unchanged.  Removed entries are freed, never returned to the cache.
        """
        _check_range(f, t)
        b, i, window = self._store.window(f, t, touching=False)
        if len(window) == 1 and window[0][0] < f and t < window[0][1]:
            rf, rt, info = window[0]
            if self.region_cache_count > self.adds_in_progress:
                self.region_cache_count -= 1
            elif not self.allocator.allocate(1):
                raise RegionNoMemory(f"region_del({f}, {t}): no entry for the split")
            self._store.replace(b, i, 1, [(rf, f, info), (t, rt, info)])
            return RegionDel(t - f, [(info, t - f)])
        kept: list[Entry] = []
        uncharges: list[tuple[object, int]] = []
        deleted = 0
        for rf, rt, info in window:
            lo, hi = max(rf, f), min(rt, t)
            deleted += hi - lo
            uncharges.append((info, hi - lo))
            if rf < f:
                kept.append((rf, f, info))
            elif t < rt:
                kept.append((t, rt, info))
        if window:
            self._store.replace(b, i, len(window), kept)
        return RegionDel(deleted, uncharges)

    # -- a page at a time, many pages at once ----------------------------------------------

    def region_add_pages(self, f: int, t: int) -> None:
        """`region_chg` then `region_add` (no info) of each page of ``[f, t)`` in turn, none
        of them in the map: what a stride of private faults commits, in O(log n).

        Each page's chg tops the cache up to ``adds_in_progress + 1`` and its add takes one
        entry, so the cache ends at ``max(cache - pages, adds)`` after the allocator was asked
        for what each top-up lacked; the regions end as one fill would leave them (the
        policy merges each page into the one before, or keeps every page its own entry).
        Only for an allocator that cannot fail.
        """
        _check_range(f, t)
        n, c, a = t - f, self.region_cache_count, self.adds_in_progress
        assert n > 0 and self._count_gaps(f, t) == (n, 1), "region_add_pages over the map"
        assert self.allocator.never_fails, "a failing allocator needs the page-by-page path"
        self.allocator.allocate(max(0, a + 1 - c) + max(0, n - max(1, c - a)))
        if self.policy == "v7":
            b, i, _ = self._store.window(f, t, touching=False)
            self._store.replace(b, i, 0, [(k, k + 1, None) for k in range(f, t)])
        else:
            self._fill_gaps(f, t, None)
        self.region_cache_count = max(c - n, a)

    def region_del_pages(self, f: int, t: int) -> None:
        """`region_chg`, `region_abort` and `region_del` of each page of ``[f, t)`` in turn,
        all of them in the map: a zap giving back a private owner's reservations, in O(log n).

        Each chg tops the cache up to ``adds_in_progress + 1``; going up from ``f``, only the
        first page can split a region (one starting before it and ending after it), taking
        one cache entry; every later page trims or removes.
        """
        _check_range(f, t)
        n, c, a = t - f, self.region_cache_count, self.adds_in_progress
        assert n > 0 and self.region_count(f, t) == n, "region_del_pages outside the map"
        assert self.allocator.never_fails, "a failing allocator needs the page-by-page path"
        split = int(self._splits(f))
        self.allocator.allocate(max(0, a + 1 - c) + int(split and n > 1 and c <= a + 1))
        self.region_cache_count = max(c, a + 1)  # region_del's own split takes none
        self.region_del(f, t)
        self.region_cache_count = max(c, a + 1) - split if n == 1 else max(c - split, a + 1)

    def region_del_each(self, f: int, t: int) -> RegionDel:
        """`region_del` of each page of ``[f, t)`` in turn, all of them in the map (a hole
        punch through cached pages), in O(log n): only the first page can split a region."""
        _check_range(f, t)
        n, c, a = t - f, self.region_cache_count, self.adds_in_progress
        assert n > 0 and self.region_count(f, t) == n, "region_del_each outside the map"
        assert self.allocator.never_fails, "a failing allocator needs the page-by-page path"
        if self._splits(f):
            if c > a:
                c -= 1
            else:
                self.allocator.allocate(1)
        self.region_cache_count = max(c, a) + 1  # region_del's own split takes none
        deleted = self.region_del(f, t)
        self.region_cache_count = c
        return deleted

    def _splits(self, f: int) -> bool:
        """Whether deleting page ``f`` alone splits the region holding it."""
        _, _, first = self._store.window(f, f + 1, touching=False)
        return first[0][0] < f and f + 1 < first[0][1]

    def region_next(self, f: int) -> int | None:
        """The first index at or after ``f`` that a region covers, if any."""
        return self._store.next_covered(f)

    def region_end(self, f: int) -> int:
        """The end of the region holding index ``f``, or ``f`` when none holds it."""
        _, _, window = self._store.window(f, f + 1, touching=False)
        return window[0][1] if window else f

    def region_count(self, f: int, t: int) -> int:
        """Pages of ``[f, t)`` covered by regions."""
        _check_range(f, t)
        _, _, window = self._store.window(f, t, touching=False)
        return sum(min(rt, t) - max(rf, f) for rf, rt, _ in window)

    # -- internals -------------------------------------------------------------------------

    def _allocate_file_region_entries(self, needed: int) -> None:
        """Grow the cache to ``adds_in_progress + needed`` entries (all or nothing)."""
        shortfall = self.adds_in_progress + needed - self.region_cache_count
        if shortfall > 0:
            if not self.allocator.allocate(shortfall):
                raise RegionNoMemory(f"cannot allocate {shortfall} file_region entries")
            self.region_cache_count += shortfall

    def _count_gaps(self, f: int, t: int) -> tuple[int, int]:
        """`add_reservation_in_range` in counting mode: (pages missing, entries needed)."""
        _, _, window = self._store.window(f, t, touching=False)
        last = f
        pages = gaps = 0
        for rf, rt, _ in window:
            if rf > last:
                pages += rf - last
                gaps += 1
            last = max(last, rt)
        if last < t:
            pages += t - last
            gaps += 1
        return pages, gaps

    def _fill_gaps(self, f: int, t: int, info: object) -> int:
        """`add_reservation_in_range` in adding mode, with this map's coalescing policy."""
        b, i, window = self._store.window(f, t, touching=True)
        out: list[Entry] = []
        last = f
        added = 0
        for entry in window:
            rf, rt, rinfo = entry
            if rf < f:
                out.append(entry)
                last = max(last, rt)
                continue
            gap_end = min(rf, t)
            if gap_end > last:
                added += gap_end - last
                self._add_entry(out, last, gap_end, info)
                if self.policy != "v7" and rf == gap_end and self._same(out[-1][2], rinfo):
                    entry = (out.pop()[0], rt, rinfo)
            out.append(entry)
            last = max(last, rt)
        if last < t:
            added += t - last
            self._add_entry(out, last, t, info)
        self._store.replace(b, i, len(window), out)
        return added

    def _add_entry(self, out: list[Entry], f: int, t: int, info: object) -> None:
        """Take a cache entry for ``[f, t)`` and merge it into a touching predecessor."""
        self.region_cache_count -= 1
        if self.policy != "v7" and out and out[-1][1] == f and self._same(out[-1][2], info):
            prev = out.pop()
            out.append((prev[0], t, prev[2]))
        else:
            out.append((f, t, info))

    def _same(self, a: object, b: object) -> bool:
        """`has_same_uncharge_info`, or always true for the legacy policy."""
        return self.policy == "legacy" or a == b

    # -- invariants ------------------------------------------------------------------------

    def check(self) -> None:
        """Assert every representation invariant of the map (AssertionError if broken)."""
        prev: Entry | None = None
        count = 0
        for entry in self._store:
            rf, rt, info = entry
            assert rf < rt, f"empty or inverted region {entry}"
            if prev is not None:
                assert prev[1] <= rf, f"regions overlap or are unsorted: {prev} then {entry}"
                if self.policy != "v7" and prev[1] == rf:
                    assert not self._same(prev[2], info), f"uncoalesced neighbours {prev} {entry}"
            prev = entry
            count += 1
        assert count == len(self._store), "store length out of step with its contents"
        assert self.adds_in_progress >= 0, "adds_in_progress is negative"
        assert self.region_cache_count >= self.adds_in_progress, (
            f"region cache ({self.region_cache_count}) below adds in progress "
            f"({self.adds_in_progress})")


def _check_range(f: int, t: int) -> None:
    if not 0 <= f <= t:
        raise ValueError(f"bad range [{f}, {t}): need 0 <= from <= to")
