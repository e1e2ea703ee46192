"""RegionStore: the blocked sorted arrays behind ResvMap, checked against a plain sorted list.

The store's blocks are exercised with a tiny ``LOAD`` (monkeypatched) so that a few dozen
ranges already span many blocks, and block splitting and merging happen on most operations.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hugetlbsim.model import region_store
from hugetlbsim.model.region_store import Entry, RegionStore


@pytest.fixture
def small_load(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(region_store, "LOAD", 4)
    yield 4


def check_blocks(store: RegionStore) -> None:
    """The store's internal invariants: parallel columns, no empty block, block size and index."""
    starts, ends, infos, lasts = store._starts, store._ends, store._infos, store._lasts
    assert len(starts) == len(ends) == len(infos) == len(lasts) == len(store._exports)
    total = 0
    for b in range(len(starts)):
        n = len(starts[b])
        assert 0 < n <= 2 * region_store.LOAD, f"block {b} has {n} entries"
        assert len(ends[b]) == len(infos[b]) == n
        assert lasts[b] == ends[b][-1], f"stale block index at {b}"
        total += n
    assert total == len(store)
    flat = list(store)
    for (f1, t1, _), (f2, t2, _) in pairwise(flat):
        assert f1 < t1 <= f2 < t2, f"unsorted or overlapping: {(f1, t1)} {(f2, t2)}"


def flat_index(store: RegionStore, b: int, i: int) -> int:
    """Position in the whole sequence of the cursor (block b, offset i)."""
    return sum(len(block) for block in store._starts[:b]) + i


def expected_window(ref: list[Entry], f: int, t: int, touching: bool) -> tuple[int, list[Entry]]:
    """Index of the first entry meeting [f, t) (or the insertion point) and the entries."""
    if touching:
        hits = [k for k, (rf, rt, _) in enumerate(ref) if rt >= f and rf <= t]
        first = next((k for k, (_, rt, _) in enumerate(ref) if rt >= f), len(ref))
    else:
        hits = [k for k, (rf, rt, _) in enumerate(ref) if rt > f and rf < t]
        first = next((k for k, (_, rt, _) in enumerate(ref) if rt > f), len(ref))
    assert hits == list(range(first, first + len(hits)))  # contiguous by construction
    return first, [ref[k] for k in hits]


def replace_window(store: RegionStore, ref: list[Entry], f: int, t: int, touching: bool,
                   cuts: list[int], info: object) -> None:
    """Replace the window of [f, t) in both store and reference by ranges cut from ``cuts``.

    The new ranges lie inside [min(f, first start), max(t, last end)], which the neighbours
    outside the window never enter, so the sequence stays sorted.
    """
    shown = store.export(repr)  # made from the blocks (or reused), before the change
    was = [list(r) for r in shown]
    b, i, window = store.window(f, t, touching)
    first, want = expected_window(ref, f, t, touching)
    assert window == want
    assert flat_index(store, b, i) == first
    lo = min([f] + [rf for rf, _, _ in window])
    hi = max([t] + [rt for _, rt, _ in window])
    points = sorted({lo + c % (hi - lo + 1) for c in cuts})
    new = [(points[k], points[k + 1], info) for k in range(0, len(points) - 1, 2)]
    store.replace(b, i, len(window), new)
    ref[first:first + len(window)] = new
    assert list(store) == ref
    check_blocks(store)
    # Exports follow the change, and what an earlier export showed stays as it was.
    assert store.export(repr) == [[rf, rt, repr(info)] for rf, rt, info in ref]
    assert shown == was


def test_empty_store() -> None:
    store = RegionStore()
    assert len(store) == 0
    assert list(store) == []
    assert store.window(0, 10, touching=False) == (0, 0, [])
    assert store.window(0, 10, touching=True) == (0, 0, [])
    store.replace(0, 0, 0, [])
    assert len(store) == 0
    store.replace(0, 0, 0, [(3, 5, "a")])
    assert list(store) == [(3, 5, "a")]


def test_window_touching_and_not() -> None:
    store = RegionStore()
    store.replace(0, 0, 0, [(0, 1, None), (2, 3, None), (5, 6, None)])
    # Not touching: [1, 2) meets nothing; the cursor is the insertion point before [2, 3).
    assert store.window(1, 2, touching=False) == (0, 1, [])
    # Touching: the neighbours ending at 1 and starting at 2 both count.
    assert store.window(1, 2, touching=True) == (0, 0, [(0, 1, None), (2, 3, None)])
    assert store.window(0, 5, touching=False)[2] == [(0, 1, None), (2, 3, None)]
    assert store.window(0, 5, touching=True)[2] == [(0, 1, None), (2, 3, None), (5, 6, None)]
    # Past the end: the cursor is the end of the last block.
    assert store.window(7, 9, touching=True) == (0, 3, [])


@pytest.mark.usefixtures("small_load")
def test_blocks_split_and_merge_on_growth_and_shrinkage() -> None:
    store = RegionStore()
    ref: list[Entry] = []
    # Append 1000 ranges one by one: the last block keeps splitting.
    for k in range(1000):
        b, i, window = store.window(2 * k, 2 * k + 1, touching=False)
        assert window == []
        store.replace(b, i, 0, [(2 * k, 2 * k + 1, k % 3)])
        ref.append((2 * k, 2 * k + 1, k % 3))
    assert list(store) == ref
    check_blocks(store)
    assert len(store._starts) >= 1000 // 8
    # Insert into the middle of every other range's gap, from the right end backwards.
    for k in range(999, 0, -2):
        b, i, window = store.window(2 * k - 1, 2 * k - 1, touching=False)
        assert window == []
        store.replace(b, i, 0, [(2 * k - 1, 2 * k, "g")])
        ref.insert(k, (2 * k - 1, 2 * k, "g"))
    assert list(store) == ref
    check_blocks(store)
    # One replacement spanning most blocks collapses them into one range.
    b, i, window = store.window(10, 1900, touching=False)
    store.replace(b, i, len(window), [(10, 1900, "big")])
    first, want = expected_window(ref, 10, 1900, touching=False)
    assert window == want
    ref[first:first + len(want)] = [(10, 1900, "big")]
    assert list(store) == ref
    check_blocks(store)
    # Delete everything, one range at a time from the left.
    while ref:
        b, i, window = store.window(ref[0][0], ref[0][1], touching=False)
        assert window == [ref[0]]
        store.replace(b, i, 1, [])
        del ref[0]
        check_blocks(store)
    assert len(store) == 0 and store._starts == []


@pytest.mark.usefixtures("small_load")
def test_delete_everything_at_once() -> None:
    store = RegionStore()
    store.replace(0, 0, 0, [(3 * k, 3 * k + 2, None) for k in range(500)])
    check_blocks(store)
    b, i, window = store.window(0, 2**63 - 1, touching=False)
    assert len(window) == 500 and (b, i) == (0, 0)
    store.replace(b, i, 500, [])
    assert len(store) == 0
    check_blocks(store)


@settings(max_examples=60, deadline=None)
@given(load=st.sampled_from([2, 3, 4, 8]), data=st.data())
def test_random_replacements_match_a_sorted_list(load: int, data: st.DataObject) -> None:
    saved = region_store.LOAD
    region_store.LOAD = load
    try:
        store = RegionStore()
        ref: list[Entry] = []
        for _ in range(data.draw(st.integers(1, 60), label="steps")):
            f = data.draw(st.integers(0, 200), label="f")
            t = f + data.draw(st.integers(0, 60), label="len")
            touching = data.draw(st.booleans(), label="touching")
            cuts = data.draw(st.lists(st.integers(0, 10**6), max_size=24), label="cuts")
            info = data.draw(st.sampled_from([None, "a", "b"]), label="info")
            replace_window(store, ref, f, t, touching, cuts, info)
            qf = data.draw(st.integers(0, 260), label="qf")
            qt = qf + data.draw(st.integers(0, 40), label="qlen")
            for touch in (False, True):
                first, want = expected_window(ref, qf, qt, touch)
                b, i, window = store.window(qf, qt, touch)
                assert window == want
                assert flat_index(store, b, i) == first
    finally:
        region_store.LOAD = saved


@pytest.mark.parametrize("load", [4, 16, 512])
def test_thousands_of_random_replacements(load: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(region_store, "LOAD", load)
    rng = random.Random(load)
    store = RegionStore()
    ref: list[Entry] = []
    space = 40_000
    for step in range(3000):
        f = rng.randrange(space)
        t = f + rng.choice([0, 1, 2, 5, 30, 300])
        cuts = [rng.randrange(10**6) for _ in range(rng.choice([0, 2, 4, 8, 40]))]
        b, i, window = store.window(f, t, touching=step % 2 == 0)
        lo = min([f] + [rf for rf, _, _ in window])
        hi = max([t] + [rt for _, rt, _ in window])
        points = sorted({lo + c % (hi - lo + 1) for c in cuts})
        new = [(points[k], points[k + 1], step % 3) for k in range(0, len(points) - 1, 2)]
        first, want = expected_window(ref, f, t, touching=step % 2 == 0)
        assert window == want
        assert flat_index(store, b, i) == first
        store.replace(b, i, len(window), new)
        ref[first:first + len(window)] = new
        if step % 100 == 0:
            assert list(store) == ref
            check_blocks(store)
    assert list(store) == ref
    check_blocks(store)
    assert len(ref) > 1000  # the space really held thousands of ranges


def test_nbytes_is_about_24_bytes_per_range() -> None:
    store = RegionStore()
    n = 50_000
    store.replace(0, 0, 0, [(2 * k, 2 * k + 1, None) for k in range(n)])
    # Two int64 columns and one pointer per range, plus block overheads.
    assert 24 * n <= store.nbytes() <= 32 * n
