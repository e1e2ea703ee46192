"""`ResvMap.region_add_pages` and `region_del_pages` against the page-by-page protocol calls
they stand for, on random maps under every policy: regions, cache, adds in progress and
allocator calls must all end equal."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from hugetlbsim.model.resv_map import POLICIES, ResvMap


def _random_map(rng: random.Random, policy: str) -> ResvMap:
    m = ResvMap(policy)  # type: ignore[arg-type]
    for _ in range(rng.randint(0, 12)):
        f = rng.randint(0, 60)
        t = f + rng.randint(1, 8)
        _, needed = m.region_chg(f, t)
        if rng.random() < 0.8:
            m.region_add(f, t, needed, rng.choice([None, "a", "b"]))
        else:
            m.region_abort(f, t, needed)
    for _ in range(rng.randint(0, 3)):  # leave adds in progress and a larger cache
        m.region_chg(rng.randint(0, 60), rng.randint(61, 70))
    return m


def _state(m: ResvMap) -> tuple[object, ...]:
    return (m.regions(), m.region_cache_count, m.adds_in_progress, m.allocator.calls)


def _clone(m: ResvMap) -> ResvMap:
    c = ResvMap(m.policy)
    for r in m.regions():
        _, needed = c.region_chg(r.from_, r.to)
        c.region_add(r.from_, r.to, needed, r.info)
    c.region_cache_count, c.adds_in_progress = m.region_cache_count, m.adds_in_progress
    c.allocator.calls = m.allocator.calls
    return c


def _covered_cases(seed: str, policy: str) -> Iterator[tuple[ResvMap, ResvMap, int, int]]:
    """Random maps, each with a copy and a range it covers (over 500 of 3 000 draws)."""
    rng = random.Random(seed)
    tried = 0
    for _ in range(3000):
        m = _random_map(rng, policy)
        picked = _covered(rng, m)
        if picked is not None:
            tried += 1
            yield m, _clone(m), *picked
    assert tried > 500


def _covered(rng: random.Random, m: ResvMap) -> tuple[int, int] | None:
    """A random range every page of which the map covers (it may span touching regions)."""
    regions = m.regions()
    if not regions:
        return None
    k = rng.randrange(len(regions))
    f = rng.randint(regions[k].from_, regions[k].to - 1)
    covered = regions[k].to  # to the end of the touching regions that follow
    while k + 1 < len(regions) and regions[k + 1].from_ == covered:
        k += 1
        covered = regions[k].to
    return f, rng.randint(f + 1, covered)


@pytest.mark.parametrize("policy", POLICIES)
def test_adding_pages_at_once_is_adding_them_one_by_one(policy: str) -> None:
    rng = random.Random(policy)
    tried = 0
    for _ in range(3000):
        m = _random_map(rng, policy)
        f = rng.randint(0, 80)
        t = f + rng.randint(1, 10)
        if m.region_count(f, t):
            continue
        tried += 1
        one = _clone(m)
        for i in range(f, t):
            _, needed = one.region_chg(i, i + 1)
            one.region_add(i, i + 1, needed, None)
        m.region_add_pages(f, t)
        assert _state(m) == _state(one), (f, t)
        m.check()
    assert tried > 500


@pytest.mark.parametrize("policy", POLICIES)
def test_deleting_pages_at_once_is_deleting_them_one_by_one(policy: str) -> None:
    for m, one, f, t in _covered_cases(policy, policy):
        for i in range(f, t):
            _, needed = one.region_chg(i, i + 1)
            one.region_abort(i, i + 1, needed)
            one.region_del(i, i + 1)
        m.region_del_pages(f, t)
        assert _state(m) == _state(one), (f, t)
        m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_deleting_each_page_at_once_is_deleting_them_one_by_one(policy: str) -> None:
    for m, one, f, t in _covered_cases(policy + "each", policy):
        pages: dict[object, int] = {}
        for i in range(f, t):
            for info, n in one.region_del(i, i + 1).uncharges:
                pages[info] = pages.get(info, 0) + n
        deleted = m.region_del_each(f, t)
        summed: dict[object, int] = {}
        for info, n in deleted.uncharges:
            summed[info] = summed.get(info, 0) + n
        assert _state(m) == _state(one) and summed == pages and deleted.pages == t - f
        m.check()
