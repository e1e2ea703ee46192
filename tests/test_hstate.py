"""The global pool (`HState`): reservations, surplus pages, resizing, unsigned display.

Expected values come from kernel-semantics.md §4 and §8 and from the measurements of
live-kernel.md §3.5 (P05a-P05c) and §3.7 (P14a), as noted per test.
"""

from __future__ import annotations

import pytest

from hugetlbsim.model.hstate import ULONG, HState, unsigned


def pool(total: int = 0, free: int | None = None, resv: int = 0, surplus: int = 0,
         overcommit: int = 0, gigantic: bool = False) -> HState:
    h = HState(gigantic=gigantic, nr_huge_pages=total,
               free_huge_pages=total if free is None else free, resv_huge_pages=resv,
               surplus_huge_pages=surplus, nr_overcommit_huge_pages=overcommit)
    h.max_huge_pages = total - surplus
    return h


def counters(h: HState) -> tuple[int, int, int, int]:
    return (h.nr_huge_pages, h.free_huge_pages, h.resv_huge_pages, h.surplus_huge_pages)


# -- hugetlb_acct_memory / gather_surplus_pages (kernel-semantics §4.1, §4.2) -----------------

def test_acct_zero_does_nothing() -> None:
    h = pool(8, resv=3)
    assert h.hugetlb_acct_memory(0)
    assert counters(h) == (8, 8, 3, 0)


def test_acct_within_free_only_raises_rsvd() -> None:
    # needed = resv + delta - free = 2 + 4 - 8 <= 0: resv += delta, no pool change.
    h = pool(8, resv=2)
    assert h.hugetlb_acct_memory(4)
    assert counters(h) == (8, 8, 6, 0)


def test_acct_exactly_all_free_pages() -> None:
    # live-kernel P01b: "mmap(8p SHARED) == pool" -> R=8 on a pool of 8.
    h = pool(8)
    assert h.hugetlb_acct_memory(8)
    assert counters(h) == (8, 8, 8, 0)
    assert h.available_huge_pages() == 0


def test_gather_allocates_surplus_for_the_shortfall() -> None:
    # live-kernel P05a: pool 2, overcommit 4, mmap 4p -> T=4 F=4 R=4 S=2.
    h = pool(2, overcommit=4)
    assert h.hugetlb_acct_memory(4)
    assert counters(h) == (4, 4, 4, 2)


def test_gather_counts_reserved_free_pages_as_unavailable() -> None:
    # P05a continued: all 4 faulted (F=0 R=0 S=2); mmap 2p more needs 2 new surplus pages,
    # exactly what overcommit 4 still allows -> T=6 F=2 R=2 S=4.
    h = pool(4, free=0, surplus=2, overcommit=4)
    assert h.hugetlb_acct_memory(2)
    assert counters(h) == (6, 2, 2, 4)


def test_gather_is_all_or_nothing() -> None:
    # P05a: "mmap(3p more): needs 3 surplus, 2 left -> ENOMEM", counters unchanged.
    h = pool(4, free=0, surplus=2, overcommit=4)
    assert not h.hugetlb_acct_memory(3)
    assert counters(h) == (4, 0, 0, 2)


def test_gather_without_overcommit_fails_beyond_free() -> None:
    # P01b "mmap(100p SHARED) > pool -> ENOMEM"; T7 "with nr_overcommit 1 the same mmap fails".
    h = pool(8)
    assert not h.hugetlb_acct_memory(9)
    assert counters(h) == (8, 8, 0, 0)
    h = pool(0, overcommit=1)
    assert not h.hugetlb_acct_memory(2)
    assert counters(h) == (0, 0, 0, 0)


def test_gigantic_pages_never_overcommit() -> None:
    # kernel-semantics §8.2: overcommit is refused for gigantic hstates; no surplus capacity.
    h = pool(0, overcommit=4, gigantic=True)
    assert h.surplus_capacity() == 0
    assert not h.hugetlb_acct_memory(1)
    assert not h.alloc_surplus_page()


# -- return_unused_surplus_pages (kernel-semantics §4.3) -----------------------------------

def test_return_releases_free_surplus_pages() -> None:
    # T7: 2 surplus reserved pages, unreserved again -> they leave the pool.
    h = pool(2, resv=2, surplus=2)
    h.hugetlb_acct_memory(-2)
    assert counters(h) == (0, 0, 0, 0)


def test_return_releases_at_most_n_surplus_pages() -> None:
    # resv -= 1, release min(1, surplus 3) = 1 free surplus page.
    h = pool(5, resv=4, surplus=3)
    h.return_unused_surplus_pages(1)
    assert counters(h) == (4, 4, 3, 2)


def test_return_stops_when_no_free_surplus_page_is_left() -> None:
    # P05a "ftruncate(4p) -> reservation dropped": T=6 F=2 R=2 S=4 -> T=4 F=0 R=0 S=2: the 2
    # free (reserved) surplus pages go, the 2 surplus pages in use stay.
    h = pool(6, free=2, resv=2, surplus=4)
    h.hugetlb_acct_memory(-2)
    assert counters(h) == (4, 0, 0, 2)
    # With no free page at all, nothing can be released; only resv drops.
    h = pool(4, free=0, resv=1, surplus=2)
    h.return_unused_surplus_pages(1)
    assert counters(h) == (4, 0, 0, 2)


def test_return_releases_free_gigantic_surplus_pages_too() -> None:
    # kernel-semantics §4.3 has no exception for gigantic pages.  6.18 skips the release only
    # when gigantic pages lack runtime support (hstate_is_gigantic && !gigantic_page_runtime_
    # supported()), which x86-64 has.  1G pages get surplus pages by a shrink below their
    # reservations (§8.1); dropping the reservations then frees them like 2 MB ones.
    h = pool(2, resv=2, surplus=2, gigantic=True)
    h.return_unused_surplus_pages(2)
    assert counters(h) == (0, 0, 0, 0)


def test_return_without_surplus_only_drops_rsvd() -> None:
    h = pool(8, resv=5)
    h.hugetlb_acct_memory(-3)
    assert counters(h) == (8, 8, 2, 0)


def test_rsvd_underflow_is_shown_unsigned() -> None:
    # live-kernel P14a: R reads 18446744073709551614 (-2) after the owner's munmap.
    h = pool(4, free=2)
    h.return_unused_surplus_pages(2)
    assert h.resv_huge_pages == -2
    assert unsigned(h.resv_huge_pages) == 18446744073709551614
    assert unsigned(-1) == ULONG - 1 == 18446744073709551615
    assert unsigned(7) == 7
    h.check()  # an underflowed Rsvd is legitimate on 6.18


def test_available_is_unsigned_like_the_kernel() -> None:
    # available_huge_pages() is free - resv in unsigned long: an underflowed Rsvd makes it
    # huge, a normal state gives the unreserved free pages.
    assert pool(8, resv=3).available_huge_pages() == 5
    assert pool(4, free=1, resv=-1).available_huge_pages() == 2
    assert pool(4, free=1, resv=2).available_huge_pages() == unsigned(-1)


# -- pages: dequeue, fresh surplus, freeing placement (kernel-semantics §6.2, §6.7) --------

def test_dequeue_with_reservation_takes_any_free_page() -> None:
    h = pool(2, resv=2)
    assert h.dequeue_huge_page(0)
    assert counters(h) == (2, 1, 2, 0)  # the caller consumes the reservation itself


def test_dequeue_without_reservation_needs_an_unreserved_page() -> None:
    # P03c: "POPULATE_WRITE p1 (free pages all reserved) -> EFAULT".
    h = pool(8, free=7, resv=7)
    assert not h.dequeue_huge_page(1)
    assert counters(h) == (8, 7, 7, 0)
    h = pool(8, resv=7)
    assert h.dequeue_huge_page(1)
    assert counters(h) == (8, 7, 7, 0)


def test_dequeue_from_an_empty_pool_fails() -> None:
    h = pool(2, free=0)
    assert not h.dequeue_huge_page(0)
    assert not h.dequeue_huge_page(1)


def test_fresh_surplus_page_goes_straight_into_use() -> None:
    # P05b: NORESERVE faults beyond the pool: T and S rise, F does not.
    h = pool(2, free=0, overcommit=1)
    assert h.alloc_surplus_page()
    assert counters(h) == (3, 0, 0, 1)
    assert not h.alloc_surplus_page()  # overcommit exhausted: P05b "p6 -> EFAULT"
    assert counters(h) == (3, 0, 0, 1)


def test_freed_page_leaves_the_pool_while_surplus_exists() -> None:
    # P05b "punch p5 (a surplus page is freed)": T=6 F=0 S=4 -> T=5 F=0 S=3.
    h = pool(6, free=0, surplus=4)
    h.enqueue_freed_page()
    assert counters(h) == (5, 0, 0, 3)


def test_freed_page_goes_free_without_surplus() -> None:
    h = pool(6, free=0)
    h.enqueue_freed_page()
    assert counters(h) == (6, 1, 0, 0)


# -- set_max_huge_pages (kernel-semantics §8.1) ---------------------------------------------

def test_grow_from_empty() -> None:
    h = pool(0)
    h.set_max_huge_pages(8)
    assert counters(h) == (8, 8, 0, 0)
    assert h.max_huge_pages == 8


def test_shrink_free_pool() -> None:
    # P05d: "write 4 > /proc/sys/vm/nr_hugepages" on a pool of 5 free pages -> T=4 F=4.
    h = pool(5)
    h.set_max_huge_pages(4)
    assert counters(h) == (4, 4, 0, 0)
    assert h.max_huge_pages == 4


def test_grow_converts_surplus_in_use_first() -> None:
    # P05b "raise nr_hugepages=4 with 2 surplus in use": T=4 F=0 S=2 (persistent 2) ->
    # sysctl=4 T=4 F=0 S=0: the surplus pages become persistent, nothing allocated.
    h = pool(4, free=0, surplus=2, overcommit=1)
    h.set_max_huge_pages(4)
    assert counters(h) == (4, 0, 0, 0)
    assert h.max_huge_pages == 4
    # "raise nr_hugepages=6" -> T=6 F=2.
    h.set_max_huge_pages(6)
    assert counters(h) == (6, 2, 0, 0)
    assert h.max_huge_pages == 6


def test_grow_partly_from_surplus() -> None:
    # P05c "echo 5" with T=3 F=3 R=3 S=2 (persistent 1): 2 surplus converted, 2 fresh pages.
    h = pool(3, resv=3, surplus=2)
    h.set_max_huge_pages(5)
    assert counters(h) == (5, 5, 3, 0)
    assert h.max_huge_pages == 5


def test_shrink_stops_at_in_use_plus_reserved_and_marks_surplus() -> None:
    # P05c: T=8 F=5 R=3 (3 in use, 3 reserved, 2 idle); "echo 4" -> sysctl=4 T=6 F=3 R=3 S=2.
    # min_count = max(4, 3 + 8 - 5) = 6: two free pages go, then 6 - 4 = 2 marked surplus
    # although overcommit is 0.
    h = pool(8, free=5, resv=3)
    h.set_max_huge_pages(4)
    assert counters(h) == (6, 3, 3, 2)
    assert h.max_huge_pages == 4
    assert h.surplus_huge_pages > h.nr_overcommit_huge_pages == 0
    # "echo 0" -> sysctl=0 T=6 F=3 R=3 S=6.
    h.set_max_huge_pages(0)
    assert counters(h) == (6, 3, 3, 6)
    assert h.max_huge_pages == 0


def test_shrink_below_reservations_only() -> None:
    # P05c "nr=3; mmap 3p (all reserved); echo 1" -> sysctl=1 T=3 F=3 R=3 S=2.
    h = pool(3, resv=3)
    h.set_max_huge_pages(1)
    assert counters(h) == (3, 3, 3, 2)
    assert h.max_huge_pages == 1
    # P04b: min_size reserve of 2 on a free pool of 8, "set nr_hugepages=1" -> T=2 F=2 R=2
    # S=1; /proc/sys/vm/nr_hugepages reads persistent = 1.
    h = pool(8, resv=2)
    h.set_max_huge_pages(1)
    assert counters(h) == (2, 2, 2, 1)
    assert h.max_huge_pages == 1


def test_shrink_follows_the_total_minus_free_form_of_min_count() -> None:
    # T8: (10,8,2,0), "echo 3": min_count = max(3, 2 + 10 - 8) = 4 -> (4,2,2,1), procfs 3.
    h = pool(10, free=8, resv=2)
    h.set_max_huge_pages(3)
    assert counters(h) == (4, 2, 2, 1)
    assert h.max_huge_pages == 3


def test_shrink_with_overcommit_set_frees_idle_pages() -> None:
    # P05b's last rows: after P05b's "anon private: NORESERVE 2p + reserved 6p" with pool 6
    # free (persistent 6) and overcommit 4, "nr_hugepages=2" frees 4 pages -> T=2 F=2.
    h = pool(6, overcommit=4)
    h.set_max_huge_pages(2)
    assert counters(h) == (2, 2, 0, 0)


def test_check_rejects_impossible_pools() -> None:
    with pytest.raises(AssertionError):
        HState(nr_huge_pages=2, free_huge_pages=3).check()
    with pytest.raises(AssertionError):
        HState(nr_huge_pages=2, free_huge_pages=2, surplus_huge_pages=3).check()
    HState(nr_huge_pages=2, free_huge_pages=2, resv_huge_pages=-1).check()
