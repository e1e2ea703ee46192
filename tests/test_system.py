"""The `System` facade: results, explanations, absent names, `ScenarioMisuse`, snapshot shape.

The rules come from ../shared/spec/scenario-format.md: results are ``ok``, an errno name,
``SIGBUS`` or ``SIGSEGV``; a name whose introducing step failed is absent and later steps get
the kernel's answer for an absent object; calling the model wrongly (an unknown operation,
process or mapping) is a caller bug, `ScenarioMisuse`.  Counter flows are in tests/flows/.
"""

from __future__ import annotations

from typing import Any

import pytest

from hugetlbsim.format.scenario import CGROUP_KEYS, OPS, POOL_KEYS, RESULTS
from hugetlbsim.model.errors import ScenarioMisuse
from hugetlbsim.model.system import System

U64 = 1 << 64


def ok(system: System, op: str, **args: Any) -> None:
    result = system.apply(op, args)
    assert result == "ok", f"{op} {args}: {result} ({system.last_explanation})"
    system.check_invariants()


def res(system: System, op: str, **args: Any) -> str:
    result = system.apply(op, args)
    system.check_invariants()
    return result


# -- results and explanations --------------------------------------------------------------

def test_every_op_of_the_format_is_a_method() -> None:
    system = System()
    for op in OPS:
        assert callable(getattr(system, op)), op


def test_success_is_ok_without_explanation() -> None:
    system = System(pool_pages=4)
    assert system.apply("mmap", {"proc": "init", "map": "m", "anon": True, "length": 2}) == "ok"
    assert system.last_explanation is None


def test_failure_is_a_result_with_an_explanation() -> None:
    # live-kernel P02c "mmap(9p anon private) > pool -> ENOMEM".
    system = System(pool_pages=8)
    result = system.apply("mmap", {"proc": "init", "map": "m", "anon": True, "length": 9,
                                   "shared": False})
    assert result == "ENOMEM"
    assert result in RESULTS
    assert isinstance(system.last_explanation, str) and system.last_explanation
    system.check_invariants()
    ok(system, "pool", pages=8)
    assert system.last_explanation is None  # cleared by the next step


def test_sigbus_is_a_result_and_the_process_lives_on() -> None:
    # scenario-format: touch stops at the first page that would SIGBUS, pages before it stay
    # faulted, the process lives on.  Pool 2, 4-page NORESERVE shared anon: p0, p1 fault.
    system = System(pool_pages=2)
    ok(system, "mmap", proc="init", map="m", anon=True, length=4, noreserve=True)
    assert res(system, "touch", proc="init", map="m", page=0, count=4) == "SIGBUS"
    assert system.last_explanation
    state = system.snapshot()
    assert (state["free"], state["rsvd"]) == (0, 0)
    ok(system, "touch", proc="init", map="m", page=0, count=2)  # still alive, pages present


def test_sigsegv_for_write_to_read_only_and_unmapped_pages() -> None:
    system = System(pool_pages=4)
    ok(system, "mmap", proc="init", map="m", anon=True, length=2, writable=False)
    assert res(system, "touch", proc="init", map="m", page=0) == "SIGSEGV"
    ok(system, "touch", proc="init", map="m", page=0, write=False)
    ok(system, "mmap", proc="init", map="w", anon=True, length=2)
    ok(system, "munmap", proc="init", map="w", offset=1, length=1)
    assert res(system, "touch", proc="init", map="w", page=1) == "SIGSEGV"
    ok(system, "touch", proc="init", map="w", page=0)


def test_mprotect_splits_and_protects() -> None:
    system = System(pool_pages=4)
    ok(system, "mmap", proc="init", map="m", anon=True, length=3, shared=False)
    ok(system, "mprotect", proc="init", map="m", offset=1, length=1, writable=False)
    assert res(system, "touch", proc="init", map="m", page=1) == "SIGSEGV"
    ok(system, "touch", proc="init", map="m", page=0)
    ok(system, "touch", proc="init", map="m", page=2)
    ok(system, "mprotect", proc="init", map="m", offset=1, length=1, writable=True)
    ok(system, "touch", proc="init", map="m", page=1)


def test_read_only_shm_attachment_cannot_become_writable() -> None:
    # shmat(SHM_RDONLY) opens the segment read-only, so the VMA lacks VM_MAYWRITE (and
    # VM_SHARED): mprotect(PROT_WRITE) is EACCES (mprotect(2): "The memory cannot be given the
    # specified access"; mm/mprotect.c refuses a VM_WRITE without VM_MAYWRITE) and the mapping
    # stays read-only, so a write is still SIGSEGV.  MADV_REMOVE is EACCES there too.
    system = System(pool_pages=4)
    ok(system, "shmget", shm="s", size=2)
    ok(system, "mmap", proc="init", map="m", shm="s", writable=False)
    assert res(system, "touch", proc="init", map="m", page=0) == "SIGSEGV"
    assert res(system, "madvise", proc="init", map="m", page=0, advice="remove") == "EACCES"
    assert res(system, "mprotect", proc="init", map="m", writable=True) == "EACCES"
    assert res(system, "touch", proc="init", map="m", page=0) == "SIGSEGV"
    assert (system.snapshot()["free"], system.snapshot()["rsvd"]) == (4, 2)


def test_madvise_remove_needs_a_shared_mapping() -> None:
    # madvise(2): MADV_REMOVE on a private mapping is EACCES; on a read-only shared mapping of
    # a file opened read-write it is allowed (VM_MAYWRITE is what counts since 6.7).
    system = System(pool_pages=4)
    ok(system, "mount", name="hp")
    ok(system, "create", file="hp/f", size=2)
    ok(system, "mmap", proc="init", map="p", file="hp/f", length=2, shared=False)
    assert res(system, "madvise", proc="init", map="p", page=0, advice="remove") == "EACCES"
    ok(system, "fallocate", file="hp/f", offset=0, length=1)
    ok(system, "mmap", proc="init", map="r", file="hp/f", length=2, writable=False)
    ok(system, "madvise", proc="init", map="r", page=0, advice="remove")
    assert system.snapshot()["files"]["hp/f"]["blocks"] == 0


def test_madvise_over_an_unmapped_part_is_enomem() -> None:
    system = System(pool_pages=4)
    ok(system, "mmap", proc="init", map="m", anon=True, length=3, shared=False)
    ok(system, "munmap", proc="init", map="m", offset=1, length=1)
    assert res(system, "madvise", proc="init", map="m", page=0, count=3,
               advice="dontneed") == "ENOMEM"


# -- ScenarioMisuse -------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["nosuchop", "apply", "snapshot", "check_invariants",
                                "_fail", "_reap"])
def test_unknown_operation(op: str) -> None:
    with pytest.raises(ScenarioMisuse):
        System().apply(op, {})


def test_unknown_process_and_mapping() -> None:
    system = System(pool_pages=2)
    with pytest.raises(ScenarioMisuse):
        system.apply("touch", {"proc": "ghost", "map": "m", "page": 0})
    with pytest.raises(ScenarioMisuse):
        system.apply("touch", {"proc": "init", "map": "never", "page": 0})
    with pytest.raises(ScenarioMisuse):
        system.apply("munmap", {"proc": "init", "map": "never"})
    with pytest.raises(ScenarioMisuse):
        system.apply("truncate", {"file": "hp/never", "size": 0})
    with pytest.raises(ScenarioMisuse):
        system.apply("shmrm", {"shm": "never"})


# -- absent names (introducing step failed) ------------------------------------------------

def test_failed_mmap_leaves_an_absent_mapping() -> None:
    # scenario-format: touch -> SIGSEGV, munmap -> ok, mprotect/madvise -> ENOMEM.
    system = System(pool_pages=2)
    assert res(system, "mmap", proc="init", map="m", anon=True, length=3) == "ENOMEM"
    assert res(system, "touch", proc="init", map="m", page=0) == "SIGSEGV"
    assert res(system, "munmap", proc="init", map="m") == "ok"
    assert res(system, "mprotect", proc="init", map="m", writable=False) == "ENOMEM"
    assert res(system, "madvise", proc="init", map="m", page=0,
               advice="dontneed") == "ENOMEM"
    ok(system, "mmap", proc="init", map="m", anon=True, length=2)  # the name is free


def test_failed_shmget_leaves_an_absent_segment() -> None:
    # scenario-format: shmrm and mmap of that shm -> EINVAL.  (P03b "shmget(9p) > pool".)
    system = System(pool_pages=8)
    assert res(system, "shmget", shm="s", size=9) == "ENOMEM"
    assert res(system, "shmrm", shm="s") == "EINVAL"
    assert res(system, "mmap", proc="init", map="m", shm="s") == "EINVAL"
    assert res(system, "touch", proc="init", map="m", page=0) == "SIGSEGV"


def test_failed_create_leaves_an_absent_file() -> None:
    # scenario-format: file operations on it -> ENOENT.  The mount was never made.
    system = System(pool_pages=8)
    assert res(system, "create", file="nomount/f", size=2) == "ENOENT"
    for op, args in [("truncate", {"size": 0}), ("fallocate", {"offset": 0, "length": 1}),
                     ("punch", {"offset": 0, "length": 1}), ("close", {}),
                     ("unlink", {})]:
        assert res(system, op, file="nomount/f", **args) == "ENOENT", op
    assert res(system, "mmap", proc="init", map="m", file="nomount/f", length=1) == "ENOENT"
    assert res(system, "touch", proc="init", map="m", page=0) == "SIGSEGV"


def test_failed_mount_leaves_an_absent_mount() -> None:
    # live-kernel P04c: "mount min_size=20M (> pool 8p)" fails; files cannot be created on it
    # and umount of a path that is not a mount point is EINVAL.
    system = System(pool_pages=8)
    assert res(system, "mount", name="hp", min_size=10) == "ENOMEM"
    assert res(system, "create", file="hp/f") == "ENOENT"
    assert res(system, "umount", name="hp") == "EINVAL"
    assert system.snapshot()["mounts"] == {}
    ok(system, "mount", name="hp", min_size=2)  # the name is free again


def test_failed_cgroup_leaves_an_absent_cgroup() -> None:
    # mkdir a/b without a: ENOENT; joining or removing it is ENOENT as well.
    system = System()
    assert res(system, "cgroup", name="a/b") == "ENOENT"
    assert res(system, "spawn", proc="p", cgroup="a/b") == "ENOENT"
    assert res(system, "rmdir", cgroup="a/b") == "ENOENT"
    assert "a/b" not in system.snapshot()["cgroups"]


# -- names and lifetimes ---------------------------------------------------------------------

def test_mapping_name_free_after_whole_munmap_only() -> None:
    system = System(pool_pages=4)
    ok(system, "mmap", proc="init", map="m", anon=True, length=2, shared=False)
    ok(system, "munmap", proc="init", map="m", offset=0, length=1)
    ok(system, "touch", proc="init", map="m", page=1)  # the rest still exists
    ok(system, "munmap", proc="init", map="m", offset=0, length=1)  # harmless again
    ok(system, "munmap", proc="init", map="m")
    with pytest.raises(ScenarioMisuse):
        system.apply("touch", {"proc": "init", "map": "m", "page": 1})
    ok(system, "mmap", proc="init", map="m", anon=True, length=1)


def test_rmdir_busy_with_tasks_or_children() -> None:
    # live-kernel P06f: "rmdir A/sub while self inside -> EBUSY"; a cgroup with a child is
    # busy too (cgroup rmdir semantics).
    system = System()
    ok(system, "cgroup", name="A")
    ok(system, "cgroup", name="A/sub")
    ok(system, "spawn", proc="p", cgroup="A/sub")
    assert res(system, "rmdir", cgroup="A/sub") == "EBUSY"
    assert res(system, "rmdir", cgroup="A") == "EBUSY"
    ok(system, "exit", proc="p")
    ok(system, "rmdir", cgroup="A/sub")
    ok(system, "rmdir", cgroup="A")
    assert set(system.snapshot()["cgroups"]) == {"root"}


def test_umount_busy_while_a_file_is_open_or_mapped() -> None:
    # live-kernel §7 item 2: "The unmount fails with 'target is busy' while this process still
    # has an fd or mapping open."
    system = System(pool_pages=4)
    ok(system, "mount", name="hp")
    ok(system, "create", file="hp/f", size=2)
    assert res(system, "umount", name="hp") == "EBUSY"
    ok(system, "mmap", proc="init", map="m", file="hp/f", length=2)
    ok(system, "close", file="hp/f")
    assert res(system, "umount", name="hp") == "EBUSY"
    ok(system, "munmap", proc="init", map="m")
    ok(system, "umount", name="hp")
    assert system.snapshot()["rsvd"] == 0  # unmounting frees the file's reservations


def test_unlinked_file_leaves_the_state_but_lives_on() -> None:
    # scenario-format: after unlink the inode lives while a handle or mapping holds it, and
    # it leaves state.files.  (P01a "unlink while mapped+open": counters unchanged.)
    system = System(pool_pages=8)
    ok(system, "mount", name="hp")
    ok(system, "create", file="hp/f", size=2)
    ok(system, "mmap", proc="init", map="m", file="hp/f", length=2)
    ok(system, "touch", proc="init", map="m", page=0)
    ok(system, "unlink", file="hp/f")
    state = system.snapshot()
    assert "hp/f" not in state["files"]
    assert (state["free"], state["rsvd"]) == (7, 1)
    ok(system, "close", file="hp/f")
    ok(system, "munmap", proc="init", map="m")
    assert (system.snapshot()["free"], system.snapshot()["rsvd"]) == (8, 0)


def test_gigantic_pages_refuse_overcommit() -> None:
    # kernel-semantics §8.2: nr_overcommit_hugepages is EINVAL for gigantic hstates.
    system = System(pagesize="1G")
    assert res(system, "pool", overcommit=1) == "EINVAL"
    ok(system, "pool", pages=2)
    assert system.snapshot()["total"] == 2


# -- snapshot shape --------------------------------------------------------------------------

def test_snapshot_of_a_fresh_system() -> None:
    state = System().snapshot()
    assert set(state) == {*POOL_KEYS, "overcommit", "cgroups", "mounts", "files"}
    assert {k: state[k] for k in (*POOL_KEYS, "overcommit")} == dict.fromkeys(
        (*POOL_KEYS, "overcommit"), 0)
    assert set(state["cgroups"]) == {"root"}
    root = state["cgroups"]["root"]
    assert set(root) == set(CGROUP_KEYS)
    assert root["limit"] is None and root["rsvd_limit"] is None  # unlimited is null
    assert state["mounts"] == {} and state["files"] == {}


def test_snapshot_initial_pool() -> None:
    state = System(pool_pages=8, pool_overcommit=2).snapshot()
    assert (state["total"], state["free"], state["nr_hugepages"]) == (8, 8, 8)


def test_snapshot_cgroups_mounts_files() -> None:
    system = System(pool_pages=8)
    ok(system, "cgroup", name="A", limit=3, rsvd_limit="max")
    ok(system, "mount", name="plain")
    ok(system, "mount", name="sized", size=4)
    ok(system, "create", file="sized/f", size=3)
    ok(system, "fallocate", file="sized/f", offset=0, length=2)
    ok(system, "memfd", file="memfd:m", size=1)
    state = system.snapshot()
    assert set(state["cgroups"]) == {"root", "A"}
    assert set(state["cgroups"]["A"]) == set(CGROUP_KEYS)
    assert (state["cgroups"]["A"]["limit"], state["cgroups"]["A"]["rsvd_limit"]) == (3, None)
    # size=4 with 2 pages reserved (the model also shows the subpool behind statfs)
    assert state["mounts"] == {
        "plain": {"free": None, "subpool": None},
        "sized": {"free": 2, "subpool": {"size": 4, "min_size": None, "used": 2,
                                         "min_reserve": 0}}}
    assert set(state["files"]) == {"sized/f", "memfd:m"}
    f = state["files"]["sized/f"]
    assert (f["blocks"], f["size"]) == (2, 3)
    assert isinstance(f["regions"], list)  # the model's extra key
    assert (state["files"]["memfd:m"]["blocks"], state["files"]["memfd:m"]["size"]) == (0, 1)
    ok(system, "close", file="memfd:m")
    assert "memfd:m" not in system.snapshot()["files"]


def test_snapshot_shows_an_underflowed_rsvd_unsigned() -> None:
    # live-kernel P14a: owner munmaps 2 private pages a forked child still maps: R = 2^64 - 2.
    system = System(pool_pages=4)
    ok(system, "mmap", proc="init", map="a", anon=True, length=2, shared=False)
    ok(system, "touch", proc="init", map="a", page=0, count=2)
    ok(system, "fork", proc="init", child="kid")
    ok(system, "munmap", proc="init", map="a")
    assert system.snapshot()["rsvd"] == U64 - 2
    ok(system, "exit", proc="kid")
    assert system.snapshot()["rsvd"] == 0


def test_policy_is_kept() -> None:
    assert System(policy="v7").policy == "v7"
    assert System().policy == "6.18"


def test_operations_are_the_formats() -> None:
    """The facade dispatches exactly the scenario format's operations."""
    from hugetlbsim.format.scenario import OPS

    assert set(OPS) == System.OPERATIONS


def test_names_really_gone_get_enoent() -> None:
    """A cgroup removed and a mount unmounted are gone: naming them again is the kernel's
    ENOENT (their directories no longer exist), not a caller error."""
    system = System(pool_pages=2)
    ok(system, "cgroup", name="a")
    ok(system, "rmdir", cgroup="a")
    assert res(system, "rmdir", cgroup="a") == "ENOENT"
    assert res(system, "spawn", proc="p", cgroup="a") == "ENOENT"
    assert res(system, "mmap", proc="p", map="m", anon=True, length=1) == "ESRCH"
    ok(system, "mount", name="hp")
    ok(system, "create", file="hp/f")
    assert res(system, "umount", name="hp") == "EBUSY"
    ok(system, "close", file="hp/f")
    ok(system, "umount", name="hp")
    assert res(system, "umount", name="hp") == "ENOENT"
    assert res(system, "truncate", file="hp/f", size=1) == "ENOENT"
    ok(system, "mount", name="hp")  # the name is free again
    ok(system, "cgroup", name="a")
