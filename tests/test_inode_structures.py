"""`CacheRuns` and `IMmap` against the plain structures they replace (a set of indexes, the
list walked by the old `vma_interval_tree_insert`), over random operations."""

from __future__ import annotations

import random

import pytest

from hugetlbsim.model.inode import CacheRuns, IMmap
from hugetlbsim.model.snapshot import cached_runs


@pytest.mark.parametrize("seed", range(20))
def test_cache_runs_follow_a_set(seed: int) -> None:
    rng = random.Random(seed)
    runs, indexes = CacheRuns(), set[int]()
    span = rng.choice([8, 64, 1000])
    shown: list[tuple[list[list[int]], list[list[int]]]] = []
    for _ in range(2000):
        index = rng.randrange(span)
        if index in indexes:
            end = runs.run_end(index)
            stop = rng.randint(index + 1, end)  # a range inside one run
            runs.remove(index) if stop == index + 1 else runs.remove_range(index, stop)
            indexes.difference_update(range(index, stop))
        else:
            nxt = runs.next_cached(index)
            stop = rng.randint(index + 1, span if nxt is None else nxt)  # none of it cached
            runs.add(index) if stop == index + 1 else runs.add_range(index, stop)
            indexes.update(range(index, stop))
        assert runs.runs() == cached_runs(indexes)
        assert all((i in runs) == (i in indexes) for i in range(span))
        lo = rng.randrange(span)
        hi = lo + rng.randrange(span)
        spans = [i for f, t in runs.spans(lo, hi) for i in range(f, t)]
        assert spans == sorted(i for i in indexes if lo <= i < hi)
        if rng.random() < 0.05:
            shown.append((runs.runs(), cached_runs(indexes)))
    # A list of runs once shown never changes afterwards (snapshots share them).
    assert all(was == expected for was, expected in shown)


class _Vma:
    """Stands for a VMA: only its first file index matters to the order."""

    def __init__(self, first: int) -> None:
        self.first = first


def _old_insert(order: list[_Vma], vma: _Vma, after: _Vma | None) -> None:
    """The list walk `vma_interval_tree_insert` did before `IMmap`."""
    if after is not None:
        order.insert(order.index(after) + 1, vma)
        return
    pos = len(order)
    while pos and order[pos - 1].first > vma.first:
        pos -= 1
    order.insert(pos, vma)


@pytest.mark.parametrize("seed", range(20))
def test_i_mmap_keeps_the_interval_tree_order(seed: int) -> None:
    rng = random.Random(seed)
    i_mmap, order = IMmap(), list[_Vma]()
    firsts = rng.choice([1, 3, 50])
    for _ in range(1500):
        how = rng.random()
        if order and how < 0.3:
            vma = rng.choice(order)
            i_mmap.remove(vma)  # type: ignore[arg-type]
            order.remove(vma)
        elif order and how < 0.7:  # fork: right after a parent, same first index
            parent = rng.choice(order) if rng.random() < 0.5 else order[0]
            child = _Vma(parent.first)
            i_mmap.insert_after(child, parent)  # type: ignore[arg-type]
            _old_insert(order, child, parent)
        else:
            vma = _Vma(rng.randrange(firsts))
            i_mmap.append_in_order(vma, vma.first)  # type: ignore[arg-type]
            _old_insert(order, vma, None)
        assert list(i_mmap) == order
        assert len(i_mmap) == len(order) and bool(i_mmap) == bool(order)
    assert all(i_mmap.index(v) == n for n, v in enumerate(order))  # type: ignore[arg-type]


def test_i_mmap_renumbers_a_used_up_gap() -> None:
    """Forks right after one parent halve one gap each: past 64 the index is renumbered."""
    i_mmap, order = IMmap(), list[_Vma]()
    parent, last = _Vma(3), _Vma(3)
    for vma in (parent, last):
        i_mmap.append_in_order(vma, 3)  # type: ignore[arg-type]
        _old_insert(order, vma, None)
    for _ in range(300):
        child = _Vma(3)
        i_mmap.insert_after(child, parent)  # type: ignore[arg-type]
        _old_insert(order, child, parent)
    assert list(i_mmap) == order
    assert i_mmap.keys == sorted(set(i_mmap.keys))
