"""ResvMap: the region protocol of kernel-semantics.md section 2, at any size.

Expected values come from the spec (section numbers given) or from the reasoning written next
to them.  The stateful tests compare ResvMap with two independent oracles: a dict of pages (what
is reserved, and by whom) and the list-walking baseline in ``bench/baseline_resv_map.py``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple, TypeVar

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hugetlbsim.model import region_store
from hugetlbsim.model.resv_map import (
    LONG_MAX,
    POLICIES,
    EntryAllocator,
    FileRegion,
    Policy,
    RegionDel,
    RegionNoMemory,
    ResvMap,
)
from hugetlbsim.model.resv_map_list import BaselineResvMap

AnyMap = ResvMap | BaselineResvMap
X, Y = "X", "Y"  # two distinct uncharge infos (stand-ins for two cgroups' counter/css pairs)


M = TypeVar("M", bound=AnyMap)


def build(m: M, spans: Iterable[tuple[int, int]], info: object = X) -> M:
    """Create regions through the protocol, one region_chg/region_add pair per span."""
    for f, t in spans:
        _, needed = m.region_chg(f, t)
        m.region_add(f, t, needed, info)
    return m


def shape(m: AnyMap) -> list[tuple[int, int]]:
    return [(r.from_, r.to) for r in m.regions()]


def state(m: AnyMap) -> tuple[list[FileRegion], int, int]:
    """Everything a failed call must leave alone."""
    return m.regions(), m.region_cache_count, m.adds_in_progress


MAP_A = [(0, 1), (2, 3), (5, 6)]


# -- the seed example ----------------------------------------------------------------------

SEED_CASES = [
    # policy, info of the new gaps, expected final regions
    ("v7", X, [(0, 1, X), (1, 2, X), (2, 3, X), (3, 5, X), (5, 6, X)]),
    ("v7", Y, [(0, 1, X), (1, 2, Y), (2, 3, X), (3, 5, Y), (5, 6, X)]),
    ("6.18", X, [(0, 6, X)]),
    ("6.18", Y, [(0, 1, X), (1, 2, Y), (2, 3, X), (3, 5, Y), (5, 6, X)]),
    # Legacy merges regardless of info.  [1,2) merges into its left neighbour, which keeps its
    # info X (the previous entry is the one extended), and that entry then absorbs [2,3).
    # [3,5) likewise merges left into [0,3) X and then absorbs [5,6): one entry, info X.
    ("legacy", X, [(0, 6, X)]),
    ("legacy", Y, [(0, 6, X)]),
]


@pytest.mark.parametrize("impl", [ResvMap, BaselineResvMap])
@pytest.mark.parametrize(("policy", "info", "expected"), SEED_CASES)
def test_seed_example(impl: type[AnyMap], policy: Policy, info: object,
                      expected: list[tuple[int, int, object]]) -> None:
    m = build(impl(policy), MAP_A, X)
    assert shape(m) == MAP_A
    chg, needed = m.region_chg(0, 5)
    assert (chg, needed) == (3, 2)  # gaps [1,2) and [3,5)
    assert m.region_add(0, 5, needed, info) == 3
    assert [tuple(r) for r in m.regions()] == expected
    assert m.adds_in_progress == 0
    assert m.region_cache_count == 0  # both entries consumed, absorbed ones not returned
    if isinstance(m, ResvMap):
        m.check()


# -- section 2.9, worked examples ----------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_29_chg_over_map_a_allocates_only_the_shortfall(policy: Policy) -> None:
    alloc = EntryAllocator()
    m = build(ResvMap(policy, alloc), MAP_A)
    # Building A: the first pair uses the pre-allocated entry; the two others allocate one each.
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (0, 0, 2)
    # Leave one spare entry in the cache (a chg that is aborted keeps its entry cached).
    m.region_chg(10, 11)
    m.region_abort(10, 11, 1)
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (1, 0, 3)
    # 2.9: cache held 1 entry, adds_in_progress 0 -> one more entry allocated, cache 2.
    assert m.region_chg(0, 5) == (3, 2)
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (2, 2, 4)
    assert m.region_add(0, 5, 2, X) == 3
    assert (m.region_cache_count, m.adds_in_progress) == (0, 0)
    m.check()


def test_29_chg_over_map_a_with_an_empty_cache_allocates_both() -> None:
    alloc = EntryAllocator()
    m = build(ResvMap("6.18", alloc), MAP_A)
    assert m.region_chg(0, 5) == (3, 2)
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (2, 2, 4)


@pytest.mark.parametrize(("policy", "expected"), [
    ("6.18", [(0, 1), (2, 3), (4, 7)]),
    ("legacy", [(0, 1), (2, 3), (4, 7)]),
    # v7 never merges: the gaps [4,5) and [6,7) stay next to the old [5,6).
    ("v7", [(0, 1), (2, 3), (4, 5), (5, 6), (6, 7)]),
])
def test_29_chg_4_7(policy: Policy, expected: list[tuple[int, int]]) -> None:
    m = build(ResvMap(policy), MAP_A)
    # [0,1) and [2,3) start left of 4; [5,6) leaves the gap [4,5); the tail gap is [6,7).
    assert m.region_chg(4, 7) == (2, 2)
    assert m.region_add(4, 7, 2, X) == 2
    assert shape(m) == expected
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_29_chg_inside_a_region_needs_one_entry_anyway(policy: Policy) -> None:
    alloc = EntryAllocator()
    m = build(ResvMap(policy, alloc), [(0, 10)])
    assert (m.region_cache_count, alloc.calls) == (0, 0)
    assert m.region_chg(2, 5) == (0, 1)  # needed forced from 0 to 1
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (1, 1, 1)
    assert m.region_add(2, 5, 1, Y) == 0
    assert shape(m) == [(0, 10)]
    # The add needed no entry, so the one region_chg reserved stays in the cache.
    assert (m.region_cache_count, m.adds_in_progress) == (1, 0)
    m.check()


@pytest.mark.parametrize("impl", [ResvMap, BaselineResvMap])
@pytest.mark.parametrize("policy", POLICIES)
def test_29_del_split_trim_remove_and_count(impl: type[AnyMap], policy: Policy) -> None:
    m = build(impl(policy), [(0, 6)])
    assert m.region_del(2, 3) == RegionDel(1, [(X, 1)])  # split
    assert shape(m) == [(0, 2), (3, 6)]
    # Trim the back of [0,2) (1 page) and the front of [3,6) (1 page).
    assert m.region_del(1, 4) == RegionDel(2, [(X, 1), (X, 1)])
    assert shape(m) == [(0, 1), (4, 6)]
    assert m.region_count(0, 5) == 2  # 1 + 1
    assert m.region_count(0, LONG_MAX) == 3
    assert m.region_count(1, 4) == 0
    assert m.region_del(0, LONG_MAX) == RegionDel(3, [(X, 1), (X, 2)])
    assert shape(m) == []
    assert m.region_count(0, LONG_MAX) == 0


def test_del_uncharges_each_region_with_its_own_info() -> None:
    m = ResvMap("6.18")
    build(m, [(0, 2), (4, 6)], X)
    build(m, [(2, 4)], Y)  # no merge: different info
    assert shape(m) == [(0, 2), (2, 4), (4, 6)]
    assert m.region_del(1, 5) == RegionDel(4, [(X, 1), (Y, 2), (X, 1)])
    assert [tuple(r) for r in m.regions()] == [(0, 1, X), (5, 6, X)]


def test_split_copies_the_info_to_the_new_tail() -> None:
    m = build(ResvMap("6.18"), [(0, 10)], Y)
    m.region_del(3, 4)
    assert [tuple(r) for r in m.regions()] == [(0, 3, Y), (4, 10, Y)]


# -- region cache and adds_in_progress -----------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_new_map_has_one_cached_entry(policy: Policy) -> None:
    alloc = EntryAllocator(fail=lambda _: True)
    m = ResvMap(policy, alloc)
    assert (len(m), m.region_cache_count, m.adds_in_progress) == (0, 1, 0)
    # So a first one-gap chg/add needs no allocation at all, even with kmalloc failing.
    assert m.region_chg(3, 7) == (4, 1)
    assert m.region_add(3, 7, 1) == 4
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (0, 0, 0)


def test_freed_entries_do_not_return_to_the_cache() -> None:
    alloc = EntryAllocator()
    m = build(ResvMap("6.18", alloc), MAP_A)
    assert m.region_cache_count == 0
    # Deleting all three entries frees them to the allocator, not to the cache.
    assert m.region_del(0, LONG_MAX).pages == 3
    assert m.region_cache_count == 0
    # Merging frees entries too: rebuild A and fill it, three entries collapse into one.
    build(m, MAP_A)
    calls = alloc.calls
    build(m, [(0, 6)])
    assert shape(m) == [(0, 6)]
    assert m.region_cache_count == 0
    assert alloc.calls == calls + 2  # the chg over [0,6) needed two entries, both allocated


def test_abort_keeps_the_entries_cached() -> None:
    alloc = EntryAllocator()
    m = build(ResvMap("6.18", alloc), [(2, 3)])
    assert m.region_chg(0, 5) == (4, 2)
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (2, 2, 2)
    m.region_abort(0, 5, 2)
    assert (m.region_cache_count, m.adds_in_progress) == (2, 0)
    assert m.region_chg(0, 5) == (4, 2)  # served from the cache
    assert alloc.calls == 2


def test_interleaved_chgs_reserve_separately_and_a_stale_add_leaves_its_entries() -> None:
    alloc = EntryAllocator()
    m = build(ResvMap("6.18", alloc), [(2, 3)])
    assert m.region_chg(0, 5) == (4, 2)
    assert m.region_chg(0, 5) == (4, 2)  # the first chg added nothing yet
    assert (m.region_cache_count, m.adds_in_progress) == (4, 4)
    assert m.region_add(0, 5, 2, X) == 4
    assert (m.region_cache_count, m.adds_in_progress) == (2, 2)
    # The second add finds nothing missing: it consumes nothing, its two entries stay cached.
    assert m.region_add(0, 5, 2, X) == 0
    assert (m.region_cache_count, m.adds_in_progress) == (2, 0)
    assert shape(m) == [(0, 5)]
    m.check()


def test_split_uses_the_cache_only_when_count_exceeds_adds_in_progress() -> None:
    alloc = EntryAllocator()
    m = build(ResvMap("6.18", alloc), [(0, 10)])
    assert (m.region_cache_count, alloc.calls) == (0, 0)
    # A chg/abort leaves one spare entry: cache 1 > adds_in_progress 0, so the split takes it.
    m.region_chg(20, 21)
    m.region_abort(20, 21, 1)
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (1, 0, 1)
    assert m.region_del(2, 3).pages == 1
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (0, 0, 1)
    # An outstanding chg owns the cached entry: cache 1 == adds_in_progress 1, so the next
    # split must allocate and leave the cache alone.
    assert m.region_chg(20, 21) == (1, 1)
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (1, 1, 2)
    assert m.region_del(5, 6).pages == 1
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (1, 1, 3)
    assert shape(m) == [(0, 2), (3, 5), (6, 10)]
    # The promised entry is still there for the add.
    assert m.region_add(20, 21, 1) == 1
    assert (m.region_cache_count, m.adds_in_progress) == (0, 0)
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_empty_range_del_inside_a_region_splits_it_like_the_kernel(policy: Policy) -> None:
    # The kernel's walk on [0,6) with f = t = 3: to (6) > f, from (0) < t, and f > from and
    # t < to, so it takes the "must split" branch and removes t - f = 0 pages, consuming an
    # entry.  The result is two touching entries with the same info, which spec 2.1 says never
    # happens ("splits never create adjacency") and ResvMap.check() rejects for 6.18/legacy.
    # The callers we know of pass [idx, idx+1) or [start, LONG_MAX), never an empty range, so
    # this only documents that the model (and the baseline) follow the kernel here too.
    for m in (build(ResvMap(policy), [(0, 6)]), build(BaselineResvMap(policy), [(0, 6)])):
        assert m.region_del(3, 3) == RegionDel(0, [(X, 0)])
        assert shape(m) == [(0, 3), (3, 6)]
        assert m.region_count(0, 6) == 6
    # Anywhere else an empty del is a no-op.
    m = build(ResvMap(policy), [(0, 6)])
    for f in (0, 6, 7):
        assert m.region_del(f, f) == RegionDel(0, [])
    assert shape(m) == [(0, 6)]


def test_bad_calls_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown region policy"):
        ResvMap("5.4")  # type: ignore[arg-type]
    m = ResvMap()
    with pytest.raises(ValueError, match="bad range"):
        m.region_chg(5, 4)
    with pytest.raises(ValueError, match="bad range"):
        m.region_count(-1, 4)
    with pytest.raises(ValueError, match="without a matching region_chg"):
        m.region_add(0, 4, 1)
    m.region_chg(0, 4)
    with pytest.raises(ValueError, match="without a region_chg"):
        m.region_abort(0, 4, 2)


# -- ENOMEM paths --------------------------------------------------------------------------


@pytest.mark.parametrize("impl", [ResvMap, BaselineResvMap])
@pytest.mark.parametrize("failing_call", [0, 1])
def test_chg_failing_changes_nothing(impl: type[AnyMap], failing_call: int) -> None:
    alloc = EntryAllocator(fail={failing_call})
    m = build(impl("6.18", alloc), [(2, 3)])  # uses the pre-allocated entry: no kmalloc
    assert alloc.calls == 0
    before = state(m)
    # [0,5) has two gaps, the cache is empty: two kmallocs, one of which fails.  The batch is
    # all or nothing, so the cache does not keep the one that succeeded.
    with pytest.raises(RegionNoMemory):
        m.region_chg(0, 5)
    assert state(m) == before
    assert alloc.calls == failing_call + 1  # allocation stops at the failing call
    # The next attempt allocates two fresh entries (the failing call number has passed).
    assert m.region_chg(0, 5) == (4, 2)
    assert (m.region_cache_count, m.adds_in_progress) == (2, 2)


def make_stale_add(impl: type[AnyMap], policy: Policy, alloc: EntryAllocator) -> AnyMap:
    """A chg over [0,10), then another chg/add pair that cuts its gap in two.

    fresh map: cache 1.  chg(0,10): one gap, needed 1, cache 1 suffices (no kmalloc), aip 1.
    chg(3,4): needed 1, cache 1 < aip 1 + 1 -> kmalloc call 0, cache 2, aip 2.
    add(3,4): consumes one entry -> cache 1, aip 1, map [3,4).
    The pending add of [0,10) now finds two gaps [0,3) and [4,10) for the one entry it reserved.
    """
    m = impl(policy, alloc)
    assert m.region_chg(0, 10) == (10, 1)
    assert m.region_chg(3, 4) == (1, 1)
    assert m.region_add(3, 4, 1, None) == 1
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (1, 1, 1)
    return m


@pytest.mark.parametrize("impl", [ResvMap, BaselineResvMap])
@pytest.mark.parametrize("policy", POLICIES)
def test_stale_add_fails_to_allocate_then_abort_works(impl: type[AnyMap], policy: Policy) -> None:
    alloc = EntryAllocator(fail={1})
    m = make_stale_add(impl, policy, alloc)
    before = state(m)
    # One extra entry needed, cache 1 < aip 1 + 1: kmalloc call 1 fails.
    with pytest.raises(RegionNoMemory):
        m.region_add(0, 10, 1, None)
    assert state(m) == before  # adds_in_progress untouched: the caller must abort
    assert alloc.calls == 2
    m.region_abort(0, 10, 1)
    assert (m.region_cache_count, m.adds_in_progress) == (1, 0)
    assert shape(m) == [(3, 4)]
    if isinstance(m, ResvMap):
        m.check()


@pytest.mark.parametrize(("policy", "expected"), [
    ("6.18", [(0, 10)]),  # same (NULL) info everywhere: both gaps merge with [3,4)
    ("legacy", [(0, 10)]),
    ("v7", [(0, 3), (3, 4), (4, 10)]),
])
@pytest.mark.parametrize("impl", [ResvMap, BaselineResvMap])
def test_stale_add_allocates_the_extra_entry(impl: type[AnyMap], policy: Policy,
                                             expected: list[tuple[int, int]]) -> None:
    alloc = EntryAllocator()
    m = make_stale_add(impl, policy, alloc)
    assert m.region_add(0, 10, 1, None) == 9  # the pages still missing, not the chg's 10
    assert alloc.calls == 2  # one extra kmalloc
    assert (m.region_cache_count, m.adds_in_progress) == (0, 0)
    assert shape(m) == expected


@pytest.mark.parametrize("impl", [ResvMap, BaselineResvMap])
def test_stale_add_with_enough_spare_entries_never_allocates(impl: type[AnyMap]) -> None:
    alloc = EntryAllocator(fail=lambda call: call >= 2)  # only calls 0 and 1 succeed
    m = make_stale_add(impl, "6.18", alloc)
    # A chg/abort pair leaves a spare entry: needed 1, cache 1 < aip 1 + 1 -> call 1 succeeds.
    assert m.region_chg(30, 31) == (1, 1)
    m.region_abort(30, 31, 1)
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (2, 1, 2)
    # The stale add needs one extra entry; cache 2 >= aip 1 + 1, so no kmalloc (it would fail).
    assert m.region_add(0, 10, 1, None) == 9
    assert (m.region_cache_count, m.adds_in_progress, alloc.calls) == (0, 0, 2)


@pytest.mark.parametrize("impl", [ResvMap, BaselineResvMap])
@pytest.mark.parametrize("policy", POLICIES)
def test_split_failing_leaves_the_map_unchanged(impl: type[AnyMap], policy: Policy) -> None:
    alloc = EntryAllocator(fail={0})
    m = build(impl(policy, alloc), [(0, 10)])  # the pre-allocated entry: no kmalloc
    before = state(m)
    assert before[1:] == (0, 0)  # nothing spare in the cache
    with pytest.raises(RegionNoMemory):
        m.region_del(2, 3)
    assert state(m) == before
    assert m.region_del(2, 3) == RegionDel(1, [(X, 1)])  # call 1 succeeds
    assert shape(m) == [(0, 2), (3, 10)]
    assert alloc.calls == 2


@pytest.mark.parametrize("impl", [ResvMap, BaselineResvMap])
def test_dels_that_do_not_split_never_allocate(impl: type[AnyMap]) -> None:
    alloc = EntryAllocator(fail=lambda _: True)
    m = build(impl("6.18", alloc), [(0, 10)])
    assert m.region_del(0, 2).pages == 2  # trim front
    assert m.region_del(8, 10).pages == 2  # trim back
    assert m.region_del(5, LONG_MAX).pages == 3  # t == LONG_MAX can never split
    assert m.region_del(0, 100).pages == 3  # remove whole
    assert alloc.calls == 0


# -- oracles for the stateful tests --------------------------------------------------------

Pages = dict[int, object]  # page -> info of the add that reserved it


def missing_runs(pages: Pages, f: int, t: int) -> list[tuple[int, int]]:
    """Maximal runs of [f, t) not reserved: the gaps the add would fill (2.2)."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for p in range(f, t + 1):
        gap = p < t and p not in pages
        if gap and start is None:
            start = p
        elif not gap and start is not None:
            runs.append((start, p))
            start = None
    return runs


def runs(pages: Pages, by_info: bool) -> list[tuple[int, int]]:
    """Maximal runs of consecutive reserved pages (with one info each if ``by_info``)."""
    out: list[tuple[int, int]] = []
    for p in sorted(pages):
        if out and out[-1][1] == p and (not by_info or pages[out[-1][0]] == pages[p]):
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


def page_infos(m: AnyMap) -> Pages:
    return {p: r.info for r in m.regions() for p in range(r.from_, r.to)}


def by_info(uncharges: list[tuple[object, int]]) -> Counter[object]:
    total: Counter[object] = Counter()
    for info, pages in uncharges:
        total[info] += pages
    return +total  # drop zero counts


class Ticket(NamedTuple):
    """A region_chg still waiting for its region_add or region_abort."""

    f: int
    t: int
    needed: int
    info: object


class World:
    """One policy: ResvMap and the baseline, each with an allocator that fails on demand."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.fail_model = -1
        self.fail_base = -1
        self.model = ResvMap(policy, EntryAllocator(fail=lambda c: c == self.fail_model))
        self.base = BaselineResvMap(policy, EntryAllocator(fail=lambda c: c == self.fail_base))

    def call(self, fail: int | None, name: str, *args: object) -> tuple[bool, object]:
        """Run one protocol call on both maps, failing their ``fail``-th kmalloc of the call.

        Both must agree on the outcome (result or RegionNoMemory), and a failed call must
        leave the map exactly as it was.
        """
        assert self.model.allocator.calls == self.base.allocator.calls
        outcomes = []
        for m in (self.model, self.base):
            if fail is not None:
                armed = m.allocator.calls + fail
                if m is self.model:
                    self.fail_model = armed
                else:
                    self.fail_base = armed
            before = state(m)
            try:
                outcomes.append((True, getattr(m, name)(*args)))
            except RegionNoMemory:
                assert state(m) == before, f"failed {name}{args} changed the map"
                outcomes.append((False, None))
            finally:
                self.fail_model = self.fail_base = -1
        assert outcomes[0] == outcomes[1], f"{name}{args}: ResvMap {outcomes[0]} vs baseline"
        assert self.model.allocator.calls == self.base.allocator.calls
        return outcomes[0]


PAGE_SPACE = 32
starts = st.integers(0, PAGE_SPACE)
lengths = st.integers(0, 10)
infos = st.sampled_from([None, X, Y])
fails = st.sampled_from([None, None, None, 0, 1, 2])
picks = st.integers(0, 2**16)


class ResvMapMachine(RuleBasedStateMachine):
    """Random protocol sequences on every world, checked against the page dict after each step.

    Subclasses choose the worlds (policies) and whether kmalloc failures are injected; without
    failures several policies run side by side and must agree on everything but the shapes.
    Besides uniformly random calls, two rules aim at the rare paths: a del strictly inside a
    run of reserved pages (a split, which needs an entry), and a one-page chg/add landing in
    the middle of a gap of a pending chg (which makes that chg's add need one more entry).
    """

    policies: tuple[Policy, ...] = POLICIES
    inject_failures = False

    def __init__(self) -> None:
        super().__init__()
        self.saved_load = region_store.LOAD
        self.worlds = [World(p) for p in self.policies]
        self.pages: Pages = {}
        self.tickets: list[Ticket] = []

    def teardown(self) -> None:
        region_store.LOAD = self.saved_load

    @initialize(load=st.sampled_from([512, 2, 3, 4, 8]))
    def set_block_size(self, load: int) -> None:
        region_store.LOAD = load  # tiny blocks make the store split and merge constantly

    # -- running one call everywhere -------------------------------------------------------

    def run(self, fail: int | None, name: str, *args: object) -> tuple[bool, object]:
        """The call on every world; all worlds must agree on success and result."""
        if not self.inject_failures:
            fail = None
        outcomes = [w.call(fail, name, *args) for w in self.worlds]
        assert all(o == outcomes[0] for o in outcomes), f"{name}{args}: policies disagree"
        event(f"{name} {'ok' if outcomes[0][0] else 'ENOMEM'}")
        return outcomes[0]

    def run_chg(self, fail: int | None, f: int, t: int, info: object) -> Ticket | None:
        gaps = missing_runs(self.pages, f, t)
        ok, result = self.run(fail, "region_chg", f, t)
        if not ok:
            return None
        assert result == (sum(b - a for a, b in gaps), max(1, len(gaps)))
        assert isinstance(result, tuple)
        ticket = Ticket(f, t, result[1], info)
        self.tickets.append(ticket)
        return ticket

    def run_add(self, fail: int | None, ticket: Ticket) -> None:
        gaps = missing_runs(self.pages, ticket.f, ticket.t)
        stale = len(gaps) > ticket.needed
        ok, result = self.run(fail, "region_add", ticket.f, ticket.t, ticket.needed, ticket.info)
        event(f"{'stale' if stale else 'fresh'} region_add {'ok' if ok else 'ENOMEM'}")
        if ok:
            assert result == sum(b - a for a, b in gaps)
            for a, b in gaps:
                self.pages.update(dict.fromkeys(range(a, b), ticket.info))
        else:
            # Only a stale add (the map changed since its chg) may need, and fail, a kmalloc;
            # its caller then backs out with region_abort.
            assert stale
            aip = [w.model.adds_in_progress for w in self.worlds]
            self.run(None, "region_abort", ticket.f, ticket.t, ticket.needed)
            assert [w.model.adds_in_progress for w in self.worlds] == [
                a - ticket.needed for a in aip]
        self.tickets.remove(ticket)

    def run_del(self, fail: int | None, f: int, t: int) -> None:
        if not self.inject_failures:
            fail = None
        present = [p for p in self.pages if f <= p < t]
        expected = by_info([(self.pages[p], 1) for p in present])
        outcomes = []
        for w in self.worlds:
            splits = any(r.from_ < f and t < r.to for r in w.model.regions())
            ok, result = w.call(fail, "region_del", f, t)
            event(f"region_del {'split' if splits else 'no split'} {'ok' if ok else 'ENOMEM'}")
            outcomes.append(ok)
            if ok:
                assert isinstance(result, RegionDel)
                assert result.pages == len(present)
                assert sum(n for _, n in result.uncharges) == len(present)
                if w.policy != "legacy":  # legacy merges lose track of who reserved what
                    assert by_info(result.uncharges) == expected
            else:
                assert splits  # only a split needs an entry
        assert all(ok == outcomes[0] for ok in outcomes)
        if outcomes[0]:
            for p in present:
                del self.pages[p]

    # -- rules -----------------------------------------------------------------------------

    @rule(f=starts, length=lengths, info=infos, fail=fails)
    def chg(self, f: int, length: int, info: object, fail: int | None) -> None:
        self.run_chg(fail, f, f + length, info)

    @rule(pick=picks, fail=fails)
    def add(self, pick: int, fail: int | None) -> None:
        if self.tickets:
            self.run_add(fail, self.tickets[pick % len(self.tickets)])

    @rule(pick=picks)
    def abort(self, pick: int) -> None:
        if self.tickets:
            ticket = self.tickets.pop(pick % len(self.tickets))
            self.run(None, "region_abort", ticket.f, ticket.t, ticket.needed)

    @rule(f=starts, length=st.integers(1, 10), fail=fails)
    def delete(self, f: int, length: int, fail: int | None) -> None:
        self.run_del(fail, f, f + length)

    @rule(pick=picks, offset=picks, length=st.integers(1, 4), fail=fails)
    def delete_inside(self, pick: int, offset: int, length: int, fail: int | None) -> None:
        inner = [(a, b) for a, b in runs(self.pages, by_info=False) if b - a >= 3]
        if inner:
            a, b = inner[pick % len(inner)]
            f = a + 1 + offset % (b - a - 2)
            self.run_del(fail, f, min(f + length, b - 1))

    @rule(pick=picks, offset=picks, info=infos, fail=fails, then_add=st.booleans(),
          add_fail=fails)
    def fill_inside_pending_gap(self, pick: int, offset: int, info: object, fail: int | None,
                                then_add: bool, add_fail: int | None) -> None:
        wide = [(tk, a, b) for tk in self.tickets for a, b in missing_runs(self.pages, tk.f, tk.t)
                if b - a >= 3]
        if wide:
            pending, a, b = wide[pick % len(wide)]
            p = a + 1 + offset % (b - a - 2)
            ticket = self.run_chg(fail, p, p + 1, info)
            if ticket is not None:
                self.run_add(fail, ticket)  # one page, in_needed 1: never allocates
                if then_add:
                    self.run_add(add_fail, pending)  # now stale: needs one more entry

    @rule(f=starts, fail=fails)
    def truncate(self, f: int, fail: int | None) -> None:
        self.run_del(fail, f, LONG_MAX)  # never splits, so never fails

    @rule(f=starts, length=lengths)
    def count(self, f: int, length: int) -> None:
        t = f + length
        ok, result = self.run(None, "region_count", f, t)
        assert ok and result == sum(1 for p in self.pages if f <= p < t)

    @invariant()
    def maps_agree_with_the_oracles(self) -> None:
        reserved_by_chgs = sum(tk.needed for tk in self.tickets)
        for w in self.worlds:
            m, b = w.model, w.base
            m.check()
            assert m.regions() == b.regions()
            assert state(m) == state(b)
            assert m.adds_in_progress == reserved_by_chgs  # 0 once every chg is matched
            assert m.region_cache_count >= m.adds_in_progress
            infos_now = page_infos(m)
            assert set(infos_now) == set(self.pages)
            if w.policy == "legacy":
                # Everything adjacent merges: the shape is the runs of reserved pages.
                assert shape(m) == runs(self.pages, by_info=False)
            else:
                # Every page keeps the info of the add that reserved it ...
                assert infos_now == self.pages
            if w.policy == "6.18":
                # ... and 6.18 merges exactly the touching entries of equal info.
                assert shape(m) == runs(self.pages, by_info=True)


class SideBySideMachine(ResvMapMachine):
    policies = POLICIES
    inject_failures = False


class FailingMachine618(ResvMapMachine):
    policies = ("6.18",)
    inject_failures = True


class FailingMachineV7(ResvMapMachine):
    policies = ("v7",)
    inject_failures = True


class FailingMachineLegacy(ResvMapMachine):
    policies = ("legacy",)
    inject_failures = True


_stateful = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestSideBySide = SideBySideMachine.TestCase
TestSideBySide.settings = _stateful
TestFailing618 = FailingMachine618.TestCase
TestFailing618.settings = _stateful
TestFailingV7 = FailingMachineV7.TestCase
TestFailingV7.settings = _stateful
TestFailingLegacy = FailingMachineLegacy.TestCase
TestFailingLegacy.settings = _stateful


# -- at scale: thousands of regions, many blocks -------------------------------------------


@pytest.mark.parametrize(("policy", "load"), [
    ("6.18", 8), ("v7", 8), ("legacy", 8), ("6.18", 512)])
def test_thousands_of_regions_against_the_baseline(policy: Policy, load: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(region_store, "LOAD", load)
    rng = random.Random(f"{policy}-{load}")
    model = build(ResvMap(policy), [(k, k + 1) for k in range(0, 6000, 3)])
    base = build(BaselineResvMap(policy), [(k, k + 1) for k in range(0, 6000, 3)])
    assert len(model) == len(base) == 2000  # sparse regions: nothing touches, nothing merges
    space = 6000
    fail_every = 7  # from now on every 7th kmalloc fails, in both implementations alike
    for m in (model, base):
        m.allocator = EntryAllocator(fail=lambda c: c % fail_every == fail_every - 1)
    assert model.regions() == base.regions()
    tickets: list[Ticket] = []

    def both(name: str, *args: object) -> object:
        out = []
        for m in (model, base):
            try:
                out.append(getattr(m, name)(*args))
            except RegionNoMemory:
                out.append("ENOMEM")
        assert out[0] == out[1], (name, args, out)
        return out[0]

    for step in range(800):
        f = rng.randrange(space)
        t = f + rng.choice([1, 1, 2, 3, 10, 50])
        op = rng.random()
        if op < 0.3 and len(tickets) < 4:
            result = both("region_chg", f, t)
            if result != "ENOMEM":
                assert isinstance(result, tuple)
                tickets.append(Ticket(f, t, result[1], rng.choice([X, Y])))
        elif op < 0.55 and tickets:
            tk = tickets.pop(rng.randrange(len(tickets)))
            if both("region_add", tk.f, tk.t, tk.needed, tk.info) == "ENOMEM":
                both("region_abort", tk.f, tk.t, tk.needed)
        elif op < 0.85:
            both("region_del", f, t)
        elif op < 0.9:
            both("region_del", f + 1, f + 2)  # strictly inside a long region: a split
        else:
            both("region_count", f, t)
        assert (model.region_cache_count, model.adds_in_progress) == (
            base.region_cache_count, base.adds_in_progress)
        if step % 100 == 0:
            model.check()
            assert model.regions() == base.regions()
    model.check()
    assert model.regions() == base.regions()
    assert len(model) > 1000
    assert len(model._store._starts) > 1  # several blocks even at the default LOAD
