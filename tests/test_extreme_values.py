"""Values at the edges of the kernel's types and of a process's address space (issue 9).

Scenario values are huge pages; the kernel gets bytes.  The expectations below were measured on
6.18.44 with 2 MB pages (a standalone probe under the machine-wide lock): 2^42 pages are 2^63
bytes, which ftruncate/fallocate receive as a negative off_t; offset + length beyond 2^63 - 1
bytes is EFBIG (fallocate) or EOVERFLOW (mmap); an mmap longer than the address space is ENOMEM;
shmget above shmmax is EINVAL; a cgroup limit of 2^42 - 1 pages or more reads back as the
unlimited one.  The 1 GB cases follow from the same kernel checks with 1 GB in place of 2 MB
(the kernel backend runs 2 MB pages only).  The kernel-marked tests run the same scenarios on
the live kernel and compare every step with the model.
"""

from __future__ import annotations

import os
import textwrap

import pytest

from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.kernel import KernelBackend, machine_unavailable
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import load_text
from hugetlbsim.format.scenario import RESULTS
from hugetlbsim.model.limits import ELF_ET_DYN_BASE, SHMMAX, TASK_SIZE
from hugetlbsim.model.system import System
from hugetlbsim.runner import run
from hugetlbsim.trace import compare

E63 = 1 << 42
"""2^63 bytes in 2 MB pages."""
E64 = 1 << 43
"""2^64 bytes in 2 MB pages."""
G63 = 1 << 33
"""2^63 bytes in 1 GB pages."""


def _system(pagesize: str = "2M", pages: int = 4) -> System:
    s = System(pagesize=pagesize, pool_pages=pages)
    s.apply("mount", {"name": "hp"})
    s.apply("create", {"file": "hp/f"})
    return s


def _size(s: System, file: str = "hp/f") -> int:
    return int(s.files[file].i_size)


# ---- truncate -------------------------------------------------------------------------------


@pytest.mark.parametrize(("pagesize", "top"), [("2M", E63), ("1G", G63)])
def test_truncate_to_2_63_bytes_is_einval(pagesize: str, top: int) -> None:
    """do_sys_ftruncate: length < 0; the largest size is 2^63 bytes less one huge page."""
    s = _system(pagesize, pages=0)
    assert s.apply("truncate", {"file": "hp/f", "size": top - 1}) == "ok"
    assert _size(s) == top - 1
    for size in (top, 2 * top - 1, 10 * top):
        assert s.apply("truncate", {"file": "hp/f", "size": size}) == "EINVAL"
        assert _size(s) == top - 1
    assert s.apply("memfd", {"file": "memfd:m", "size": top}) == "EINVAL"
    assert s.files["memfd:m"].i_size == 0  # created, then the truncate refused (as on the kernel)


def test_truncate_of_100_million_pages_is_ok() -> None:
    s = _system(pages=0)
    assert s.apply("truncate", {"file": "hp/f", "size": 10**8}) == "ok"
    assert s.snapshot()["files"]["hp/f"]["size"] == 10**8


# ---- fallocate and punch --------------------------------------------------------------------


@pytest.mark.parametrize("op", ["fallocate", "punch"])
@pytest.mark.parametrize(("pagesize", "top"), [("2M", E63), ("1G", G63)])
def test_fallocate_range_checks(op: str, pagesize: str, top: int) -> None:
    """vfs_fallocate: offset < 0 or len <= 0 is EINVAL, then offset + len past s_maxbytes
    (2^63 - 1 bytes) is EFBIG."""
    s = _system(pagesize, pages=0)
    cases = [((top, 1), "EINVAL"), ((0, top), "EINVAL"), ((2 * top - 1, 1), "EINVAL"),
             ((0, 2 * top - 1), "EINVAL"), ((top // 2, top // 2), "EFBIG"), ((top - 1, 1), "EFBIG"),
             ((0, 0), "EINVAL")]
    for (offset, length), result in cases:
        args = {"file": "hp/f", "offset": offset, "length": length}
        assert s.apply(op, args) == result, (offset, length)
        assert _size(s) == 0


def test_fallocate_at_the_last_page_of_the_largest_file() -> None:
    s = _system(pages=4)
    assert s.apply("fallocate", {"file": "hp/f", "offset": E63 - 2, "length": 1}) == "ok"
    snap = s.snapshot()
    assert (snap["files"]["hp/f"]["blocks"], snap["files"]["hp/f"]["size"]) == (1, E63 - 1)
    assert snap["free"] == 3
    assert s.apply("punch", {"file": "hp/f", "offset": 0, "length": E63 - 1}) == "ok"
    assert s.snapshot()["free"] == 4


def test_fallocate_of_the_whole_file_runs_out_of_pages() -> None:
    """The kernel allocates page by page and keeps what it got (ENOSPC at the fifth)."""
    s = _system(pages=4)
    assert s.apply("fallocate", {"file": "hp/f", "offset": 0, "length": E63 - 1}) == "ENOSPC"
    assert s.snapshot()["files"]["hp/f"]["blocks"] == 4
    assert _size(s) == 0


# ---- mmap -----------------------------------------------------------------------------------


def _mmap(s: System, map: str, **args: object) -> str:
    return s.apply("mmap", {"proc": "init", "map": map, **args})


# Pages of 2 MB in the largest hole of a PIE process (below its executable) and in TASK_SIZE.
HOLE_2M = (ELF_ET_DYN_BASE // (2 << 20) * (2 << 20) - (2 << 20)) // (2 << 20)
HOLE_1G = (ELF_ET_DYN_BASE // (1 << 30) * (1 << 30) - (1 << 30)) // (1 << 30)


def test_the_address_space_in_pages() -> None:
    assert HOLE_2M == 44739241  # measured on 6.18.44: 44.9M to 45.2M pages fit, ASLR decides
    assert TASK_SIZE // (2 << 20) == (1 << 26) - 1
    assert HOLE_1G == 87380


@pytest.mark.parametrize("kind", [{"anon": True}, {"file": "hp/f"}, {"anon": True, "shared": False},
                                  {"file": "hp/f", "shared": False}])
def test_mmap_beyond_the_address_space_is_enomem(kind: dict[str, object]) -> None:
    """get_unmapped_area: len > TASK_SIZE, or no hole that large: ENOMEM, even with
    MAP_NORESERVE (the model said ok to 10^8 pages)."""
    s = _system(pages=0)
    for i, length in enumerate((10**8, 1 << 26, (1 << 26) - 1, HOLE_2M + 1, E63, E64 - 1)):
        assert _mmap(s, f"m{i}", length=length, noreserve=True, **kind) == "ENOMEM", length
    assert _mmap(s, "ok1", length=1 << 25, noreserve=True, **kind) == "ok"
    assert _mmap(s, "ok2", length=HOLE_2M, noreserve=True, **kind) == "ok"
    # with a reservation, the pool refuses first (also ENOMEM)
    assert _mmap(s, "r", length=1 << 25, **kind) == "ENOMEM"


def test_mmap_offset_plus_length_beyond_2_63_bytes_is_eoverflow() -> None:
    """file_mmap_ok: pgoff beyond MAX_LFS_FILESIZE - len is EOVERFLOW, after the address space
    check (a too long mapping at a too large offset is ENOMEM)."""
    s = _system(pages=4)
    for i, (offset, length) in enumerate(((E63 - 1, 1), (E63, 1), (E64 - 1, 1),
                                          (E63 - 2, 1 << 25))):
        assert _mmap(s, f"m{i}", file="hp/f", offset=offset, length=length) == "EOVERFLOW"
        assert _mmap(s, f"n{i}", file="hp/f", offset=offset, length=length,
                     noreserve=True) == "EOVERFLOW"
    assert _mmap(s, "big", file="hp/f", offset=E63 - 1, length=1 << 26) == "ENOMEM"
    assert _size(s) == 0
    assert _mmap(s, "last", file="hp/f", offset=E63 - 2, length=1) == "ok"
    assert _size(s) == E63 - 1
    assert s.snapshot()["rsvd"] == 1


def test_mmap_1g_address_space() -> None:
    s = _system("1G", pages=0)
    assert _mmap(s, "a", anon=True, length=1 << 17, noreserve=True) == "ENOMEM"
    assert _mmap(s, "b", anon=True, length=HOLE_1G + 1, noreserve=True) == "ENOMEM"
    assert _mmap(s, "c", anon=True, length=HOLE_1G, noreserve=True) == "ok"
    assert _mmap(s, "d", file="hp/f", offset=G63 - 1, length=1, noreserve=True) == "EOVERFLOW"
    assert _mmap(s, "e", file="hp/f", offset=G63 - 2, length=1, noreserve=True) == "ok"


def test_touch_and_madvise_over_a_long_mapping_stay_cheap() -> None:
    s = _system(pages=4)
    assert _mmap(s, "c", anon=True, length=1 << 25, noreserve=True) == "ok"
    touch = {"proc": "init", "map": "c", "page": 0, "count": 1 << 25}
    assert s.apply("touch", touch) == "SIGBUS"
    assert s.apply("madvise", {**touch, "advice": "dontneed"}) == "ok"
    assert s.apply("munmap", {"proc": "init", "map": "c", "offset": 1,
                              "length": (1 << 25) - 2}) == "ok"
    assert s.apply("touch", {**touch, "count": 3}) == "SIGSEGV"


# ---- shm ------------------------------------------------------------------------------------


def test_shmget_above_shmmax_is_einval() -> None:
    """newseg: size > shm_ctlmax (default SHMMAX = 2^64 - 2^24 - 1) is EINVAL; below, the
    reservation decides (ENOMEM), and a NORESERVE segment too long to map fails at shmat."""
    top = SHMMAX // (2 << 20)
    s = _system(pages=4)
    for size in (top + 1, E64 - 1):
        assert s.apply("shmget", {"shm": "x", "size": size}) == "EINVAL"
        assert s.apply("shmget", {"shm": "x", "size": size, "noreserve": True}) == "EINVAL"
    assert s.apply("shmget", {"shm": "r", "size": top}) == "ENOMEM"
    assert s.apply("shmget", {"shm": "n", "size": top, "noreserve": True}) == "ok"
    assert _mmap(s, "m", shm="n") == "ENOMEM"
    assert s.apply("shmget", {"shm": "k", "size": 1 << 25, "noreserve": True}) == "ok"
    assert _mmap(s, "k", shm="k") == "ok"
    # 1 GB: 2^34 - 1 pages are 2^64 - 2^30 bytes, within shmmax: every expressible size passes
    g = _system("1G", pages=0)
    assert g.apply("shmget", {"shm": "y", "size": G63 * 2 - 1, "noreserve": True}) == "ok"
    assert _mmap(g, "y", shm="y") == "ENOMEM"


def test_a_reservation_beyond_page_counter_max_fails_in_the_cgroup() -> None:
    """Even an unlimited hugetlb cgroup counter stops at PAGE_COUNTER_MAX (measured: shmget of
    2^42 pages raises rsvd.failcnt, before the pool refuses)."""
    s = _system(pages=4)
    assert s.apply("shmget", {"shm": "r", "size": E63}) == "ENOMEM"
    assert "unlimited, at most" in (s.last_explanation or "")
    assert s.snapshot()["cgroups"]["root"]["rsvd_failcnt"] == 1
    assert s.apply("shmget", {"shm": "q", "size": E63 - 1}) == "ENOMEM"
    assert s.snapshot()["cgroups"]["root"]["rsvd_failcnt"] == 1  # the pool refused this one


# ---- cgroup limits, mounts, pool ------------------------------------------------------------


@pytest.mark.parametrize(("pagesize", "top"), [("2M", E63), ("1G", G63)])
def test_cgroup_limit_at_page_counter_max_is_unlimited(pagesize: str, top: int) -> None:
    """hugetlb_cgroup_write: min(bytes / 4096, PAGE_COUNTER_MAX) rounded down to a huge page;
    2^42 - 1 pages of 2 MB (2^63 bytes less one page) and more read back as "max"."""
    s = System(pagesize=pagesize)
    assert s.apply("cgroup", {"name": "g", "limit": top - 2, "rsvd_limit": top // 2}) == "ok"
    cg = s.snapshot()["cgroups"]["g"]
    assert (cg["limit"], cg["rsvd_limit"]) == (top - 2, top // 2)
    for value in (top - 1, top, 2 * top - 1):
        assert s.apply("cgroup", {"name": "g", "limit": value, "rsvd_limit": value}) == "ok"
        cg = s.snapshot()["cgroups"]["g"]
        assert (cg["limit"], cg["rsvd_limit"]) == (None, None)


def test_mount_sizes() -> None:
    """A huge size= is a subpool that never refuses; a huge min_size= cannot be reserved."""
    s = System(pool_pages=4)
    assert s.apply("mount", {"name": "big", "size": E64 - 1}) == "ok"
    assert s.snapshot()["mounts"]["big"]["free"] == E64 - 1
    assert s.apply("mount", {"name": "m", "min_size": E63}) == "ENOMEM"
    assert s.apply("mount", {"name": "n", "size": E64 - 1, "min_size": E63}) == "ENOMEM"


def test_pool_overcommit_to_the_largest_value() -> None:
    """nr_overcommit_hugepages takes any unsigned long (measured: 2^64 - 1 reads back)."""
    s = System()
    assert s.apply("pool", {"overcommit": (1 << 64) - 1}) == "ok"
    assert s.hstate.nr_overcommit_huge_pages == (1 << 64) - 1


def test_new_results_are_in_the_format() -> None:
    assert {"EFBIG", "EOVERFLOW"} <= set(RESULTS)


# ---- the same on the live kernel ------------------------------------------------------------

SCENARIOS = {
    "truncate": """
        - create: {file: hp/f}
        - truncate: {file: hp/f, size: 4398046511103}
        - truncate: {file: hp/f, size: 4398046511104}
        - truncate: {file: hp/f, size: 8796093022207}
        - memfd: {file: "memfd:m", size: 4398046511104}
        - truncate: {file: "memfd:m", size: 100000000}
    """,
    "fallocate": """
        - create: {file: hp/f}
        - fallocate: {file: hp/f, offset: 4398046511104, length: 1}
        - fallocate: {file: hp/f, offset: 0, length: 8796093022207, keep_size: true}
        - fallocate: {file: hp/f, offset: 2199023255552, length: 2199023255552}
        - fallocate: {file: hp/f, offset: 4398046511103, length: 1}
        - fallocate: {file: hp/f, offset: 4398046511102, length: 1}
        - punch: {file: hp/f, offset: 4398046511102, length: 2}
        - punch: {file: hp/f, offset: 4398046511104, length: 1}
        - punch: {file: hp/f, offset: 0, length: 4398046511103}
        - truncate: {file: hp/f, size: 0}
        - fallocate: {file: hp/f, offset: 0, length: 4398046511103}
    """,
    "mmap": """
        - create: {file: hp/f}
        - spawn: {proc: p}
        - mmap: {proc: p, map: a, anon: true, length: 100000000, noreserve: true}
        - mmap: {proc: p, map: b, file: hp/f, length: 67108864, noreserve: true}
        - mmap: {proc: p, map: c, anon: true, shared: false, length: 67108863, noreserve: true}
        - mmap: {proc: p, map: d, anon: true, length: 8796093022207}
        - mmap: {proc: p, map: e, file: hp/f, length: 1000}
        - mmap: {proc: p, map: f, file: hp/f, offset: 4398046511103, length: 1}
        - mmap: {proc: p, map: g, file: hp/f, offset: 8796093022207, length: 1, noreserve: true}
        - mmap: {proc: p, map: h, file: hp/f, offset: 4398046511102, length: 33554432}
        - mmap: {proc: p, map: i, file: hp/f, offset: 4398046511102, length: 1}
        - mmap: {proc: p, map: j, anon: true, length: 33554432, noreserve: true}
        - touch: {proc: p, map: j, page: 0, count: 33554432}
        - munmap: {proc: p, map: j, offset: 2, length: 33554429}
        - touch: {proc: p, map: j, page: 1, count: 2, write: false}
        - fork: {proc: p, child: q}
        - madvise: {proc: q, map: j, page: 0, count: 33554432, advice: dontneed}
        - exit: {proc: q}
        - munmap: {proc: p, map: j}
        - munmap: {proc: p, map: i}
    """,
    "shm-cgroup-mount": """
        - cgroup: {name: g, limit: 2199023255552, rsvd_limit: 4398046511102}
        - cgroup: {name: g, limit: 4398046511103, rsvd_limit: 8796093022207}
        - spawn: {proc: p, cgroup: g}
        - shmget: {shm: a, size: 8796093022200, proc: p}
        - shmget: {shm: b, size: 8796093022199, proc: p}
        - shmget: {shm: c, size: 4398046511103, noreserve: true, proc: p}
        - mmap: {proc: p, map: m, shm: c}
        - shmrm: {shm: c}
        - shmget: {shm: d, size: 4398046511104, proc: p}
        - mount: {name: big, size: 8796093022207}
        - mount: {name: min, min_size: 4398046511104}
        - create: {file: big/f, size: 4398046511103}
        - pool: {overcommit: 4}
    """,
}


def _scenario(name: str) -> str:
    return ("format: 1\nname: extreme-" + name + "\npool: {pages: 4}\nsteps:\n"
            "  - mount: {name: hp}\n" + textwrap.indent(textwrap.dedent(SCENARIOS[name]), "  "))


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenarios_run_on_the_model(name: str) -> None:
    trace = run(load_text(_scenario(name)), ModelBackend())
    assert all(step.result in RESULTS for step in trace.steps)


KERNEL_REASON = machine_unavailable()


@pytest.mark.kernel
@pytest.mark.skipif(KERNEL_REASON is not None, reason=str(KERNEL_REASON))
@pytest.mark.parametrize("name", SCENARIOS)
def test_the_kernel_answers_as_the_model(name: str) -> None:
    """Every step's result and counters equal on the live kernel and the model (the backend
    takes the machine-wide lock; a busy pool skips)."""
    scenario = load_text(_scenario(name))
    model = run(scenario, ModelBackend())
    try:
        kernel = run(scenario, KernelBackend(lock_timeout=float(
            os.environ.get("HUGETLBSIM_LOCK_TIMEOUT", "300"))))
    except BackendUnavailable as e:
        pytest.skip(str(e))
    diffs = compare(model, kernel)
    assert not diffs, "\n".join(f"step {d.index} {d.op} {d.args}: {d.differences}"
                                for d in diffs)
