"""hugetlb cgroups (`HugetlbCgroup`, `PageCounter`), cgroup v1 meaning, units of pages.

Expected values from kernel-semantics.md §9.1, §9.3, §9.4 and the measurements of
live-kernel.md §4.1 (P06f: rmdir with charges) and §4.2 (P07a-P07c: limits, failcnt,
watermarks).
"""

from __future__ import annotations

import pytest

from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup


def tree() -> tuple[HugetlbCgroup, HugetlbCgroup, HugetlbCgroup]:
    root = HugetlbCgroup("root")
    parent = HugetlbCgroup.child_of(root, "L")
    child = HugetlbCgroup.child_of(parent, "L/k")
    return root, parent, child


def test_charge_is_hierarchical() -> None:
    # §9.1: a charge increases the cgroup and every ancestor (P06f: sub.u=3 -> A.u=3, rt.u=3).
    root, parent, child = tree()
    assert child.charge_fault(3) is None
    assert child.charge_rsvd(6) is None
    assert (child.fault.usage, parent.fault.usage, root.fault.usage) == (3, 3, 3)
    assert (child.rsvd.usage, parent.rsvd.usage, root.rsvd.usage) == (6, 6, 6)
    assert (child.fault.watermark, parent.fault.watermark, root.fault.watermark) == (3, 3, 3)


def test_uncharge_walks_to_the_root() -> None:
    root, parent, child = tree()
    child.charge_fault(3)
    child.fault.uncharge(2)
    assert (child.fault.usage, parent.fault.usage, root.fault.usage) == (1, 1, 1)
    assert child.fault.watermark == 3  # a watermark never goes down by itself


def test_limit_hit_on_own_level() -> None:
    # P07a: rsvd.limit 2, mmap(3p) -> ENOMEM, "failcnt=0 rsvd.failcnt=1 max=0 rsvd.max=0".
    root, parent, _ = tree()
    assert parent.set_limit("rsvd_limit", 2)
    hit = parent.charge_rsvd(3)
    assert hit is parent.rsvd
    assert (parent.rsvd.usage, parent.rsvd.failcnt, parent.rsvd.watermark) == (0, 1, 0)
    assert parent.fault.failcnt == 0
    assert root.rsvd.usage == 0
    assert parent.charge_rsvd(2) is None  # exactly the limit fits
    assert (parent.rsvd.usage, parent.rsvd.watermark) == (2, 2)


def test_failcnt_on_the_level_hit_and_child_watermark_raised() -> None:
    # P07c: L rsvd.limit 2, k unlimited; k's mmap(3p) -> ENOMEM.  L (the level hit) gets the
    # failcnt, k none; k's rsvd watermark shows 3 although L refused ("k.rsvd.max = 3");
    # usage is rolled back everywhere; root is never reached.
    root, parent, child = tree()
    parent.set_limit("rsvd_limit", 2)
    hit = child.charge_rsvd(3)
    assert hit is parent.rsvd
    assert (child.rsvd.failcnt, parent.rsvd.failcnt) == (0, 1)
    assert (child.rsvd.usage, parent.rsvd.usage, root.rsvd.usage) == (0, 0, 0)
    assert (child.rsvd.watermark, parent.rsvd.watermark, root.rsvd.watermark) == (3, 0, 0)


def test_fault_limit_counts_every_failed_attempt() -> None:
    # P07b: fault limit 2, two pages charged, then five failed attempts -> failcnt=5, max=2.
    _, parent, _ = tree()
    parent.set_limit("limit", 2)
    assert parent.charge_fault(1) is None
    assert parent.charge_fault(1) is None
    for _ in range(5):
        assert parent.charge_fault(1) is parent.fault
    assert (parent.fault.usage, parent.fault.failcnt, parent.fault.watermark) == (2, 5, 2)
    assert parent.rsvd.failcnt == 0


def test_limit_below_usage_is_refused() -> None:
    # P07a "lower rsvd.limit to 1p (< usage 2) -> EBUSY"; P07b the same for the fault limit.
    _, parent, _ = tree()
    parent.charge_rsvd(2)
    parent.charge_fault(2)
    assert not parent.set_limit("rsvd_limit", 1)
    assert not parent.set_limit("limit", 1)
    assert parent.rsvd.limit is None and parent.fault.limit is None
    assert parent.set_limit("rsvd_limit", 2)  # equal to usage is fine
    assert parent.rsvd.limit == 2
    assert parent.set_limit("rsvd_limit", None)  # "set rsvd.limit=-1": unlimited
    assert parent.rsvd.limit is None


def test_limits_are_per_counter() -> None:
    # P07b: the fault limit does not limit reservations ("mmap(4p SHARED) (reservation not
    # limited) -> ok").
    _, parent, _ = tree()
    parent.set_limit("limit", 2)
    assert parent.charge_rsvd(4) is None
    assert parent.charge_fault(3) is parent.fault


def test_refusal_names_the_cgroup_and_limit() -> None:
    _, parent, child = tree()
    parent.set_limit("rsvd_limit", 2)
    hit = child.charge_rsvd(3)
    assert hit is not None
    why = child.refusal(hit, 3)
    assert "'L'" in why and "reservation" in why and "2" in why
    parent.set_limit("limit", 0)
    hit = child.charge_fault(1)
    assert hit is not None
    assert "'L' fault limit" in child.refusal(hit, 1)


def test_css_offline_moves_fault_charges_up_and_keeps_rsvd() -> None:
    # §9.4 and P06f: rmdir of A/sub with sub.u=3 sub.r=6 leaves A.u=3 A.r=6 (hierarchical
    # totals unchanged).  The fault charge is cancelled at sub only; the rsvd charges stay
    # on the offline sub, and their later uncharge still reaches A and root ("munmap private
    # (charged to removed sub)": A.r 6 -> 4).
    root = HugetlbCgroup("root")
    a = HugetlbCgroup.child_of(root, "A")
    sub = HugetlbCgroup.child_of(a, "A/sub")
    sub.charge_fault(3)
    sub.charge_rsvd(6)
    sub.css_offline()
    assert not sub.online
    assert sub not in a.children
    assert sub.fault.usage == 0
    assert (a.fault.usage, root.fault.usage) == (3, 3)
    assert (sub.rsvd.usage, a.rsvd.usage, root.rsvd.usage) == (6, 6, 6)
    sub.rsvd.uncharge(2)
    assert (a.rsvd.usage, root.rsvd.usage) == (4, 4)
    # The moved fault charges are now the parent's: a page freed later uncharges A.
    a.fault.uncharge(1)
    assert (a.fault.usage, root.fault.usage) == (2, 2)
    a.check()
    root.check()


def test_check_catches_a_broken_tree() -> None:
    root, _, child = tree()
    root.check()
    child.fault.usage = -1
    with pytest.raises(AssertionError):
        child.check()
