"""hugetlb cgroup v2 in the model: events propagation, the no-internal-process rule, rmdir with
outstanding charges, limits, memory accounting.

Every expectation below was measured on this machine's 6.18 kernel through a private cgroup2
subtree (``/sys/fs/cgroup/unified/<probe>``, a hidden leaf for the probe root's processes);
the numbers are pages.
"""

from __future__ import annotations

from typing import Any

import pytest

from hugetlbsim.model.errors import KernelLacks
from hugetlbsim.model.kernels import kernel
from hugetlbsim.model.system import System


def _v2(pool: int = 16, **kw: Any) -> System:
    return System(pool_pages=pool, cgroups="v2", **kw)


def _run(s: System, op: str, **args: Any) -> str:
    result = s.apply(op, args)
    s.check_invariants()
    return result


def _cg(s: System, name: str) -> dict[str, Any]:
    state: dict[str, Any] = s.snapshot()["cgroups"][name]
    return state


def _ev(s: System, name: str) -> tuple[int, int | None]:
    c = _cg(s, name)
    return c["events"], c.get("events_local")


def test_v2_state_keys() -> None:
    """v2 shows current/rsvd.current/max/rsvd.max/events/events.local; the root (a private
    cgroup whose processes live in a hidden leaf) has no events.local; no v1 watermarks."""
    s = _v2()
    assert _run(s, "cgroup", name="a") == "ok"
    assert set(_cg(s, "root")) == {"usage", "rsvd", "limit", "rsvd_limit", "events"}
    assert set(_cg(s, "a")) == {"usage", "rsvd", "limit", "rsvd_limit", "events",
                                "events_local"}
    v1 = System(pool_pages=16)
    v1.apply("cgroup", {"name": "a"})
    assert "events" not in v1.snapshot()["cgroups"]["a"]
    assert "failcnt" in v1.snapshot()["cgroups"]["a"]


def test_events_move_on_the_charging_cgroup_and_every_ancestor() -> None:
    """Measured: a task in a/s refused by a's fault limit raises events of a/s, a and root and
    events.local of a/s only; a/b is untouched.  Reservation refusals count on the same line,
    whichever level's limit refused."""
    s = _v2()
    for name, limit in (("a", 2), ("a/s", None), ("a/b", None)):
        assert _run(s, "cgroup", name=name, limit=limit) == "ok"
    assert _run(s, "spawn", proc="p", cgroup="a/s") == "ok"
    assert _run(s, "mmap", proc="p", map="m", anon=True, length=4, shared=False) == "ok"
    assert _run(s, "touch", proc="p", map="m", page=0, count=4) == "SIGBUS"
    assert (_cg(s, "a/s")["usage"], _cg(s, "a/s")["rsvd"]) == (2, 4)
    assert [_ev(s, n) for n in ("root", "a", "a/s", "a/b")] == [
        (1, None), (1, 0), (1, 1), (0, 0)]
    # limits below usage are EBUSY on v2 as on v1 (page_counter_set_max)
    assert _run(s, "cgroup", name="a", limit=1) == "EBUSY"
    assert _run(s, "cgroup", name="a/s", rsvd_limit=1) == "EBUSY"
    assert _run(s, "cgroup", name="a", rsvd_limit=5) == "ok"
    assert _run(s, "mmap", proc="p", map="m2", anon=True, length=2) == "ENOMEM"
    assert [_ev(s, n) for n in ("root", "a", "a/s", "a/b")] == [
        (2, None), (2, 0), (2, 2), (0, 0)]
    assert _run(s, "spawn", proc="q", cgroup="a/b") == "ok"
    assert _run(s, "mmap", proc="q", map="m3", anon=True, length=2) == "ENOMEM"
    assert [_ev(s, n) for n in ("root", "a", "a/s", "a/b")] == [
        (3, None), (3, 0), (2, 2), (1, 1)]
    assert _run(s, "cgroup", name="a/s", rsvd_limit=4) == "ok"
    assert _run(s, "cgroup", name="a", rsvd_limit="max") == "ok"
    assert _run(s, "mmap", proc="p", map="m4", anon=True, length=1) == "ENOMEM"
    assert [_ev(s, n) for n in ("root", "a", "a/s", "a/b")] == [
        (4, None), (4, 0), (3, 3), (1, 1)]
    assert "events went up in 'a/s', 'a', 'root'" in (s.last_explanation or "")


def test_no_internal_processes() -> None:
    """Measured: enabling hugetlb in the subtree_control of a cgroup with a process is EBUSY,
    and so is moving a process into a cgroup whose subtree_control is not empty."""
    s = _v2()
    assert _run(s, "cgroup", name="a") == "ok"
    assert _run(s, "spawn", proc="p", cgroup="a") == "ok"
    assert _run(s, "cgroup", name="a/s") == "EBUSY"
    assert "a/s" not in s.snapshot()["cgroups"]
    assert _run(s, "attach", proc="p", cgroup="root") == "ok"
    assert _run(s, "cgroup", name="a/s") == "ok"
    assert _run(s, "attach", proc="p", cgroup="a") == "EBUSY"
    assert _run(s, "spawn", proc="r", cgroup="a") == "EBUSY"
    assert _run(s, "exit", proc="r") == "ESRCH"  # r is absent
    assert _run(s, "attach", proc="p", cgroup="a/s") == "ok"
    assert _run(s, "fork", proc="p", child="c") == "ok"
    assert _run(s, "rmdir", cgroup="a") == "EBUSY"
    assert _run(s, "attach", proc="p", cgroup="root") == "ok"
    assert _run(s, "attach", proc="c", cgroup="root") == "ok"
    assert _run(s, "rmdir", cgroup="a/s") == "ok"
    assert _run(s, "attach", proc="p", cgroup="a") == "ok"  # no child left: a leaf again
    # the scenario's root always takes processes (its hidden leaf) and children
    assert _run(s, "cgroup", name="b") == "ok"
    assert _run(s, "spawn", proc="z", cgroup="root") == "ok"


def test_v1_has_no_internal_process_rule() -> None:
    s = System(pool_pages=16)
    assert s.apply("cgroup", {"name": "a"}) == "ok"
    assert s.apply("spawn", {"proc": "p", "cgroup": "a"}) == "ok"
    assert s.apply("cgroup", {"name": "a/s"}) == "ok"
    assert s.apply("attach", {"proc": "init", "cgroup": "a"}) == "ok"


def test_rmdir_with_outstanding_charges() -> None:
    """Measured: rmdir of a/c holding 3 faulted pages and 6 reserved succeeds once its task
    left; a keeps u=3 r=6, the removed cgroup's reservations are uncharged from a later."""
    s = _v2()
    assert _run(s, "cgroup", name="a") == "ok"
    assert _run(s, "cgroup", name="a/c") == "ok"
    assert _run(s, "spawn", proc="p", cgroup="a/c") == "ok"
    assert _run(s, "mount", name="hp") == "ok"
    assert _run(s, "create", file="hp/f", size=4) == "ok"
    assert _run(s, "mmap", proc="p", map="sh", file="hp/f", length=4) == "ok"
    assert _run(s, "mmap", proc="p", map="pr", anon=True, length=2, shared=False) == "ok"
    assert _run(s, "touch", proc="p", map="sh", page=0, count=2) == "ok"
    assert _run(s, "touch", proc="p", map="pr", page=0) == "ok"
    assert _run(s, "rmdir", cgroup="a/c") == "EBUSY"
    assert _run(s, "attach", proc="p", cgroup="root") == "ok"
    assert _run(s, "rmdir", cgroup="a/c") == "ok"
    assert (_cg(s, "a")["usage"], _cg(s, "a")["rsvd"]) == (3, 6)
    # a is a leaf again: it may hold processes, and its limits see the moved charges
    assert _run(s, "cgroup", name="a", limit=3) == "ok"
    assert _run(s, "cgroup", name="a", rsvd_limit=5) == "EBUSY"
    assert _run(s, "spawn", proc="q", cgroup="a") == "ok"
    assert _run(s, "mmap", proc="q", map="m", anon=True, length=1) == "ok"
    assert (_cg(s, "a")["usage"], _cg(s, "a")["rsvd"]) == (3, 7)
    assert _run(s, "munmap", proc="p", map="pr") == "ok"
    assert (_cg(s, "a")["usage"], _cg(s, "a")["rsvd"]) == (2, 5)
    assert _run(s, "munmap", proc="p", map="sh") == "ok"
    assert _run(s, "truncate", file="hp/f", size=0) == "ok"
    assert (_cg(s, "a")["usage"], _cg(s, "a")["rsvd"]) == (0, 1)
    assert s.snapshot()["rsvd"] == 1


def test_runc_and_crun_limits() -> None:
    """Kubernetes: runc writes max and rsvd.max (the mmap fails), crun only max (a fault fails)."""
    runc = _v2(8)
    assert _run(runc, "cgroup", name="pod", limit=2, rsvd_limit=2) == "ok"
    assert _run(runc, "spawn", proc="p", cgroup="pod") == "ok"
    assert _run(runc, "mmap", proc="p", map="m", anon=True, length=4) == "ENOMEM"
    assert _ev(runc, "pod") == (1, 1)
    crun = _v2(8)
    assert _run(crun, "cgroup", name="pod", limit=2) == "ok"
    assert _run(crun, "spawn", proc="p", cgroup="pod") == "ok"
    assert _run(crun, "mmap", proc="p", map="m", anon=True, length=4) == "ok"
    assert _run(crun, "touch", proc="p", map="m", page=0, count=4) == "SIGBUS"
    assert _cg(crun, "pod")["usage"] == 2 and _ev(crun, "pod") == (1, 1)


def test_memory_accounting() -> None:
    """memory_hugetlb_accounting: each page is charged to the allocating task's memory cgroup
    and uncharged when freed; a removed cgroup's charge still counts in its parent."""
    s = _v2(memory_accounting=True)
    assert _run(s, "cgroup", name="a") == "ok"
    assert _run(s, "cgroup", name="a/b") == "ok"
    assert _run(s, "spawn", proc="p", cgroup="a/b") == "ok"
    assert _run(s, "mmap", proc="p", map="m", anon=True, length=3, shared=False) == "ok"
    assert _cg(s, "a/b")["memory"] == 0  # reservations are not memory
    assert _run(s, "touch", proc="p", map="m", page=0, count=2) == "ok"
    assert [_cg(s, n)["memory"] for n in ("root", "a", "a/b")] == [2, 2, 2]
    assert _run(s, "attach", proc="p", cgroup="root") == "ok"
    assert _run(s, "rmdir", cgroup="a/b") == "ok"
    assert [_cg(s, n)["memory"] for n in ("root", "a")] == [2, 2]
    assert _run(s, "munmap", proc="p", map="m") == "ok"
    assert [_cg(s, n)["memory"] for n in ("root", "a")] == [0, 0]


def test_memory_accounting_needs_6_7() -> None:
    with pytest.raises(KernelLacks, match=r"6\.7"):
        System(cgroups="v2", memory_accounting=True, kernel=kernel("6.1"))
    System(cgroups="v2", memory_accounting=True, kernel=kernel("6.12"))
    with pytest.raises(ValueError):
        System(cgroups="v1", memory_accounting=True)
    with pytest.raises(ValueError):
        System(cgroups="v3")


def test_spawn_into_a_refused_cgroup_leaves_the_process_absent() -> None:
    """Fuzz (policies seed 1069): a cgroup refused EBUSY is absent, a spawn into it is ENOENT
    and the process absent too (ESRCH afterwards, as the kernel backend answers)."""
    s = _v2()
    assert _run(s, "cgroup", name="g") == "ok"
    assert _run(s, "attach", proc="init", cgroup="g") == "ok"
    assert _run(s, "cgroup", name="g/h") == "EBUSY"
    assert _run(s, "spawn", proc="p", cgroup="g/h") == "ENOENT"
    assert _run(s, "mmap", proc="p", map="m", anon=True, length=1) == "ESRCH"
