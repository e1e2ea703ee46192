"""hugetlbfs subpools (`HugepageSubpool`): size= / min_size= accounting.

Expected values from kernel-semantics.md §3 (get/put, the min_size quirk of §3.3, statfs
§3.5, release at umount §3.4) and the measurements of live-kernel.md §3.4 (P04a-P04c).
Sizes are in pages: size=8M is 4 pages, min_size=4M is 2.
"""

from __future__ import annotations

from hugetlbsim.model.hstate import HState
from hugetlbsim.model.subpool import HugepageSubpool


def hstate(pages: int = 8) -> HState:
    h = HState()
    h.set_max_huge_pages(pages)
    return h


def spool(h: HState, max_hpages: int = -1, min_hpages: int = -1) -> HugepageSubpool:
    sp = HugepageSubpool.new(h, max_hpages, min_hpages)
    assert sp is not None
    return sp


# -- creation (§3.1) ------------------------------------------------------------------------

def test_size_only_reserves_nothing() -> None:
    # P04a "mount size=8M -> ok": R=0, statfs bfree=4.
    h = hstate()
    sp = spool(h, max_hpages=4)
    assert h.resv_huge_pages == 0
    assert sp.statfs_free() == 4


def test_min_size_reserves_at_mount() -> None:
    # P04b "mount min_size=4M": R=2; statfs shows -1 without size= (None here).
    h = hstate()
    sp = spool(h, min_hpages=2)
    assert h.resv_huge_pages == 2
    assert (sp.rsv_hpages, sp.used_hpages) == (2, 0)
    assert sp.statfs_free() is None


def test_min_size_beyond_the_pool_fails_and_changes_nothing() -> None:
    # P04c "mount min_size=20M (> pool 8p)" and "min_size=4M with nr_hugepages=0": ENOMEM.
    h = hstate()
    assert HugepageSubpool.new(h, -1, 10) is None
    assert (h.nr_huge_pages, h.free_huge_pages, h.resv_huge_pages) == (8, 8, 0)
    assert HugepageSubpool.new(hstate(0), -1, 2) is None


# -- get_pages (§3.2) -------------------------------------------------------------------------

def test_get_within_size() -> None:
    # P04a: mmap(2p SHARED) -> bfree 2: two pages charged, all needed globally.
    sp = spool(hstate(), max_hpages=4)
    assert sp.get_pages(2) == 2
    assert sp.used_hpages == 2
    assert sp.statfs_free() == 2


def test_get_over_size_fails_without_change() -> None:
    # P04a: "mmap(3p SHARED off 2p) exceeds size -> ENOMEM"; T6: get(3) with max 2.
    sp = spool(hstate(), max_hpages=4)
    sp.get_pages(2)
    assert sp.get_pages(3) is None
    assert sp.used_hpages == 2
    assert sp.get_pages(2) == 2  # exactly up to the max is fine
    assert sp.statfs_free() == 0


def test_get_draws_on_the_min_reserve_first() -> None:
    # T5 / P04b: min 2; mmap 1p -> 0 more global (R stays 2), then mmap 2p more -> 1 global
    # (R 1 -> 2 after the first page was faulted).
    sp = spool(hstate(), min_hpages=2)
    assert sp.get_pages(1) == 0
    assert sp.rsv_hpages == 1
    assert sp.get_pages(2) == 1
    assert sp.rsv_hpages == 0
    assert sp.get_pages(1) == 1  # reserve used up: everything is global again
    assert sp.used_hpages == 0  # no size=: used is never counted


def test_get_with_both_size_and_min() -> None:
    # P04c "mount size=8M,min_size=4M" then "mmap(3p) -> bfree=1 R=3": used 3, 2 from the
    # min reserve, 1 global.
    h = hstate()
    sp = spool(h, max_hpages=4, min_hpages=2)
    assert sp.get_pages(3) == 1
    assert (sp.used_hpages, sp.rsv_hpages, sp.statfs_free()) == (3, 0, 1)
    assert sp.get_pages(2) is None  # "mmap(2p more) > size -> ENOMEM"


# -- put_pages (§3.3) -------------------------------------------------------------------------

def test_put_without_min_returns_everything() -> None:
    sp = spool(hstate(), max_hpages=4)
    sp.get_pages(3)
    assert sp.put_pages(2) == 2
    assert sp.used_hpages == 1
    assert sp.statfs_free() == 3


def test_put_refills_the_min_reserve_first() -> None:
    # T5: after all 3 pages were faulted (rsv 0), eviction frees them one by one:
    # put(1) -> 0 (rsv 1), put(1) -> 0 (rsv 2), put(1) -> 1 (rsv stays 2).
    sp = spool(hstate(), min_hpages=2)
    sp.get_pages(3)
    assert sp.put_pages(1) == 0
    assert sp.rsv_hpages == 1
    assert sp.put_pages(1) == 0
    assert sp.put_pages(1) == 1
    assert sp.rsv_hpages == 2


def test_put_of_several_pages_caps_the_reserve_at_min() -> None:
    # rsv 0 + 3 > min 2: return rsv + d - min = 0 + 3 - 2 = 1, and rsv = min = 2.
    sp = spool(hstate(), min_hpages=2)
    sp.get_pages(3)
    assert sp.put_pages(3) == 1
    assert sp.rsv_hpages == 2
    assert sp.put_pages(0) == 0  # hugetlb_unreserve_pages' put(chg - freed) with nothing left


def test_min_size_quirk_parks_pages_while_used_is_below_min() -> None:
    # §3.3 quirk: once used < min, every returned page is parked in rsv (capped at min),
    # however far below min used is, so used + rsv can exceed min.
    sp = spool(hstate(), max_hpages=4, min_hpages=2)
    assert sp.get_pages(4) == 2  # used 4, rsv 2 -> 0
    assert sp.put_pages(1) == 1  # used 3 >= min: plain return, rsv stays 0
    assert (sp.used_hpages, sp.rsv_hpages) == (3, 0)
    assert sp.put_pages(2) == 0  # used 1 < min: rsv 0 + 2 <= 2 -> parked
    assert (sp.used_hpages, sp.rsv_hpages) == (1, 2)
    assert sp.used_hpages + sp.rsv_hpages > sp.min_hpages


def test_min_only_put_always_parks() -> None:
    # §3.3: without size= used stays 0 < min, so the parking branch always runs.
    sp = spool(hstate(), min_hpages=3)
    sp.get_pages(3)
    assert sp.put_pages(1) == 0
    assert sp.put_pages(1) == 0
    assert sp.put_pages(1) == 0
    assert sp.put_pages(1) == 1
    assert sp.rsv_hpages == 3


# -- umount (§3.4) ---------------------------------------------------------------------------

def test_umount_releases_the_min_reserve() -> None:
    # P04b "umount": R=2 -> 0.
    h = hstate()
    sp = spool(h, min_hpages=2)
    sp.put()
    assert sp.count == 0
    assert h.resv_huge_pages == 0


def test_umount_defers_release_until_the_reserve_is_whole() -> None:
    # §3.4: a page still holding part of the min reserve keeps the subpool alive; the last
    # put_pages that makes it free releases the min reservation.  The page holds one of the
    # 2 global reservations (consumed: hstate resv 1), so after put_pages gives it back (0:
    # the subpool keeps it, the page restores resv to 2), the release drops both.
    h = hstate()
    sp = spool(h, min_hpages=2)
    assert sp.get_pages(1) == 0
    h.resv_huge_pages -= 1  # the page consumed one of the min reservations
    sp.put()
    assert h.resv_huge_pages == 1  # not released: rsv 1 != min 2
    assert sp.put_pages(1) == 0
    h.resv_huge_pages += 1  # free_huge_folio restores it (put returned 0)
    # The release ran inside put_pages (before the caller's restore): net zero.
    assert h.resv_huge_pages == 0


def test_umount_of_size_only_subpool_waits_for_used_zero() -> None:
    h = hstate()
    sp = spool(h, max_hpages=4)
    sp.get_pages(1)
    sp.put()
    assert sp.used_hpages == 1
    sp.put_pages(1)
    assert sp.used_hpages == 0
    assert h.resv_huge_pages == 0


def test_umount_with_size_and_min_releases_min_once_used_is_zero() -> None:
    # P04c "umount" after cleanup: R=2 -> 0.
    h = hstate()
    sp = spool(h, max_hpages=4, min_hpages=2)
    sp.get_pages(3)
    h.hugetlb_acct_memory(1)  # the mmap's one global page
    h.hugetlb_acct_memory(-sp.put_pages(3))  # truncate: put(3) -> rsv 2, return 1
    assert h.resv_huge_pages == 2
    sp.put()
    assert h.resv_huge_pages == 0
