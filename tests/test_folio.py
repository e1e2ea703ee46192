"""`free_huge_folio`: what freeing a page in use gives back (kernel-semantics.md §6.7).

Restore of a consumed reservation, subpool credit (including the min_size refill that turns
into a restore), cgroup uncharges, and placement (a page leaves the pool while any surplus
page exists).  Checked against live-kernel.md P04b/T5 (min_size refill), P05b/P05c (surplus
placement) and P06a/P11f (uncharges).
"""

from __future__ import annotations

from hugetlbsim.model.folio import Folio, free_huge_folio
from hugetlbsim.model.hstate import HState
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.subpool import HugepageSubpool


def in_use(h: HState, n: int = 1) -> None:
    """Take ``n`` free pages into use (as an allocation would)."""
    h.free_huge_pages -= n


def setup(total: int = 8) -> tuple[HState, HugetlbCgroup, HugetlbCgroup]:
    h = HState()
    h.set_max_huge_pages(total)
    root = HugetlbCgroup("root")
    return h, root, HugetlbCgroup.child_of(root, "A")


def test_restore_reserve_gives_the_reservation_back() -> None:
    # A page that consumed a reservation and was never instantiated (restore_reserve set):
    # freeing it gives Rsvd +1 and Free +1, and does not touch the subpool.
    h, _, a = setup()
    sp = HugepageSubpool(h, max_hpages=4, used_hpages=2)
    in_use(h)
    a.charge_fault(1)
    folio = Folio(h, sp, a, None, restore_reserve=True)
    free_huge_folio(folio)
    assert (h.nr_huge_pages, h.free_huge_pages, h.resv_huge_pages) == (8, 8, 1)
    assert sp.used_hpages == 2
    assert not folio.restore_reserve
    assert a.fault.usage == 0


def test_plain_free_credits_the_subpool() -> None:
    # P04a "ftruncate(0) -> bfree=4": every freed page gives its size= page back.
    h, _, a = setup()
    sp = HugepageSubpool(h, max_hpages=4, used_hpages=3)
    in_use(h)
    a.charge_fault(1)
    free_huge_folio(Folio(h, sp, a, None))
    assert (h.free_huge_pages, h.resv_huge_pages) == (8, 0)
    assert sp.used_hpages == 2
    assert sp.statfs_free() == 2


def test_min_size_refill_turns_into_a_restore() -> None:
    # T5 / P11c: a page of a min_size mount freed while the min reserve is short:
    # put_pages(1) returns 0, so the page restores a global reservation (R +1).
    h, _, a = setup()
    sp = HugepageSubpool(h, min_hpages=2, rsv_hpages=0)
    in_use(h)
    a.charge_fault(1)
    free_huge_folio(Folio(h, sp, a, None))
    assert (h.free_huge_pages, h.resv_huge_pages) == (8, 1)
    assert sp.rsv_hpages == 1


def test_min_size_reserve_full_no_restore() -> None:
    h, _, a = setup()
    sp = HugepageSubpool(h, min_hpages=2, rsv_hpages=2)
    in_use(h)
    a.charge_fault(1)
    free_huge_folio(Folio(h, sp, a, None))
    assert (h.free_huge_pages, h.resv_huge_pages) == (8, 0)
    assert sp.rsv_hpages == 2


def test_both_cgroup_charges_are_uncharged() -> None:
    # P06a "[B] punch p4 (fallocated by B)": B.u 3->2 and B.r 2->1 (the page carried an rsvd
    # charge because it was allocated without a reservation); the fault owner A of another
    # page is untouched.
    h, root, a = setup()
    b = HugetlbCgroup.child_of(root, "B")
    in_use(h)
    b.charge_fault(1)
    b.charge_rsvd(1)
    a.charge_fault(1)
    free_huge_folio(Folio(h, None, b, b))
    assert (b.fault.usage, b.rsvd.usage, a.fault.usage) == (0, 0, 1)
    assert (root.fault.usage, root.rsvd.usage) == (1, 0)


def test_fault_and_rsvd_owners_may_differ() -> None:
    h, root, a = setup()
    b = HugetlbCgroup.child_of(root, "B")
    in_use(h)
    a.charge_fault(1)
    b.charge_rsvd(1)
    free_huge_folio(Folio(h, None, a, b))
    assert (a.fault.usage, b.rsvd.usage, root.fault.usage, root.rsvd.usage) == (0, 0, 0, 0)


def test_freed_page_leaves_the_pool_while_surplus_exists() -> None:
    # P05c "punch p0 (in-use surplus freed)": T=6 F=2 R=2 S=6 -> T=5 F=2 R=2 S=5.
    a = HugetlbCgroup("root")
    h = HState(nr_huge_pages=6, free_huge_pages=2, resv_huge_pages=2, surplus_huge_pages=6)
    a.charge_fault(1)
    free_huge_folio(Folio(h, None, a, None))
    assert (h.nr_huge_pages, h.free_huge_pages, h.resv_huge_pages,
            h.surplus_huge_pages) == (5, 2, 2, 5)


def test_restored_surplus_page_still_leaves_the_pool() -> None:
    # §6.7: restore (resv++) and placement are independent: with surplus present the page
    # leaves the pool (total--, surplus--) even though it gives its reservation back.  This
    # is how T7's owner munmap would look if a restore happened with surplus (it does not:
    # restore-on-unmap is off while surplus exists, P14c); here only free_huge_folio is
    # exercised.
    h = HState(nr_huge_pages=2, free_huge_pages=1, resv_huge_pages=0, surplus_huge_pages=2)
    cg = HugetlbCgroup("root")
    cg.charge_fault(1)
    free_huge_folio(Folio(h, None, cg, None, restore_reserve=True))
    assert (h.nr_huge_pages, h.free_huge_pages, h.resv_huge_pages,
            h.surplus_huge_pages) == (1, 1, 1, 1)


def test_unused_means_unmapped_and_out_of_the_page_cache() -> None:
    h, _, a = setup()
    folio = Folio(h, None, a, None)
    assert folio.unused
    folio.mapcount = 1
    assert not folio.unused
    folio.mapcount = 0
    folio.in_page_cache = True
    assert not folio.unused
