"""The end-to-end traces T1-T9 of kernel-semantics.md §10, replayed step by step.

These values come from the kernel-source reading of kernel-semantics.md, not from a
measurement; every one of them agrees with the live measurements that cover the same ground
(named per trace).  Where the two could disagree the live-kernel tests win; no trace step
below contradicts a measured line.  Counters are (Total, Free, Rsvd, Surp) with a pool of
10 pages unless the trace says otherwise; the scenario's ``root`` cgroup is "cg" of T1.

Coverage map for kernel-semantics.md §5.4 (what mmap does to counters), row by row:
* MAP_SHARED on hugetlbfs file: T1, T2 here; live P01a, P01b (test_shared.py), P06a.
* MAP_PRIVATE (file or anon): T3, T4, T7, T8 here; live P02a, P02c, P06b, P04a (subpool).
* any + MAP_NORESERVE: T6 here; live P03c, P05b, P06d, P14d.
* MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB: live P02c, P02f, P06b, P06f.
* SHM_HUGETLB: live P03b, P06d.
§9.2 (who pays) is covered row by row in test_cgroup_flows.py (see its docstring) plus T1,
T2 and T9 here.
"""

from __future__ import annotations

import pytest
from helpers import Seq, new_system, replay, row, rows, run_rows

# T1 Shared file (cgroups on: the mapper is in the scenario's root cgroup).
T1_ROWS = rows(
    row("mount (setup)", "mount", name="hp"),
    row("an empty file (setup)", "create", "T=10 F=10 R=0 S=0 size[hp/f]=0", file="hp/f"),
    row("mmap 4 pages RW MAP_SHARED: rsvd cg +4, i_size 8 MiB", "mmap",
        "T=10 F=10 R=4 S=0 rt.r=4 rt.u=0 size[hp/f]=4", map="m", file="hp/f", length=4),
    row("write idx0, idx1: REUSE twice, fault cg +2", "touch",
        "T=10 F=8 R=2 S=0 rt.u=2 rt.r=4 blocks[hp/f]=2", map="m", page=0, count=2),
    row("munmap: unchanged", "munmap", "T=10 F=8 R=2 S=0 rt.u=2 rt.r=4", map="m"),
    row("ftruncate 0: pages freed, rsvd cg -4, put(4-2)", "truncate",
        "T=10 F=10 R=0 S=0 rt.u=0 rt.r=0 blocks[hp/f]=0", file="hp/f", size=0),
)
T1 = Seq("kernel-semantics.md §10 T1", pool=10, rows=T1_ROWS)

# T2 Shared, second mapping, hole punch (first mapper in A, second in B).
T2_PREFIX = rows(
    row("cgroup A", "cgroup", name="A"),
    row("cgroup B", "cgroup", name="B"),
    row("mapper A", "spawn", proc="pa", cgroup="A"),
    row("mapper B", "spawn", proc="pb", cgroup="B"),
    row("mount (setup)", "mount", name="hp"),
    row("an empty file (setup)", "create", file="hp/f"),
    row("T1's mmap [0,4) by A", "mmap", "T=10 F=10 R=4 S=0 A.r=4", proc="pa", map="m",
        file="hp/f", length=4),
    row("T1's faults idx0, idx1", "touch", "T=10 F=8 R=2 S=0 A.u=2 A.r=4", proc="pa", map="m",
        page=0, count=2),
    row("second MAP_SHARED mmap of [0,6) by B: chg 2", "mmap",
        "T=10 F=8 R=4 S=0 A.r=4 B.r=2 B.u=0", proc="pb", map="m", file="hp/f", length=6),
)
T2 = Seq("kernel-semantics.md §10 T2", pool=10, rows=rows(
    T2_PREFIX,
    row("punch pages 0-3: only idx0, idx1 have pages; rsvd cg of A -2; Rsvd unchanged",
        "punch", "T=10 F=10 R=4 S=0 A.u=0 A.r=2 B.r=2", file="hp/f", offset=0, length=4),
))

# T3 Private.  The file is given 4 pages so the read fault is inside it (a writable private
# mmap would raise i_size to 4 anyway, kernel-semantics §5.1).
T3 = Seq("kernel-semantics.md §10 T3", pool=10, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("a 4p file without pages (setup)", "create", file="hp/f", size=4),
    row("mmap 4 private: owner", "mmap", "T=10 F=10 R=4 S=0 rt.r=4", map="p", file="hp/f",
        length=4, shared=False),
    row("read idx0 (file empty): REUSE, anon page", "touch", "T=10 F=9 R=3 S=0 rt.u=1",
        map="p", page=0, write=False),
    row("write idx0: reuse in place, no change", "touch", "T=10 F=9 R=3 S=0", map="p", page=0),
    row("write idx1", "touch", "T=10 F=8 R=2 S=0 rt.u=2", map="p", page=1),
    row("MADV_DONTNEED idx0 (6.8+, no surplus)", "madvise", "T=10 F=9 R=3 S=0 rt.u=1 rt.r=4",
        map="p", page=0, advice="dontneed"),
    row("munmap: close reserve 4 - 0; rsvd cg -4", "munmap", "T=10 F=10 R=0 S=0 rt.u=0 rt.r=0",
        map="p"),
))

# T4 Private + fork, pool exhausted (nr_hugepages = 4).
T4 = Seq("kernel-semantics.md §10 T4", pool=4, rows=rows(
    row("owner maps 4 private", "mmap", "T=4 F=4 R=4 S=0", map="a", anon=True, length=4,
        shared=False),
    row("owner writes idx0, idx1", "touch", "T=4 F=2 R=2 S=0", map="a", page=0, count=2),
    row("fork", "fork", "T=4 F=2 R=2 S=0", child="kid"),
    row("child read idx2: NEEDED, available 0 -> SIGBUS", "touch", "T=4 F=2 R=2 S=0",
        result="SIGBUS", proc="kid", map="a", page=2, write=False),
    row("child write idx0: NEEDED -> SIGBUS", "touch", "T=4 F=2 R=2 S=0", result="SIGBUS",
        proc="kid", map="a", page=0),
    row("owner write idx0: ENFORCED fails, the child's page is taken", "touch",
        "T=4 F=2 R=2 S=0", map="a", page=0),
    row("child: not-present fault at idx0 -> SIGBUS", "touch", "T=4 F=2 R=2 S=0",
        result="SIGBUS", proc="kid", map="a", page=0, write=False),
    row("child: not-present fault at idx3 -> SIGBUS", "touch", "T=4 F=2 R=2 S=0",
        result="SIGBUS", proc="kid", map="a", page=3),
    row("child exits", "exit", "T=4 F=2 R=2 S=0", proc="kid"),
    row("owner munmap", "munmap", "T=4 F=4 R=0 S=0", map="a"),
))

# T4 with nr_hugepages = 6: the owner's write takes an available page.
T4_6 = Seq("kernel-semantics.md §10 T4 (nr_hugepages 6)", pool=6, rows=rows(
    row("owner maps 4 private", "mmap", "T=6 F=6 R=4 S=0 rt.r=4", map="a", anon=True,
        length=4, shared=False),
    row("owner writes idx0, idx1", "touch", "T=6 F=4 R=2 S=0 rt.u=2 rt.r=4", map="a", page=0,
        count=2),
    row("fork", "fork", "T=6 F=4 R=2 S=0", child="kid"),
    row("owner write idx0: copy from an available page (rsvd cg +1, fault cg +1)", "touch",
        "T=6 F=3 R=2 S=0 rt.u=3 rt.r=5", map="a", page=0),
    # The child still maps the original idx0 page (the owner now has its own copy): the
    # child's exit frees it, with its fault charge (it had no rsvd charge: REUSE).
    row("child exits", "exit", "T=6 F=4 R=2 S=0 rt.u=2 rt.r=5", proc="kid"),
    row("owner munmap", "munmap", "T=6 F=6 R=0 S=0 rt.u=0 rt.r=0", map="a"),
))

# T5 min_size=4M (2 pages).  Live counterparts: P04b, P11c.
T5 = Seq("kernel-semantics.md §10 T5", pool=10, rows=rows(
    row("mount min_size=4M", "mount", "T=10 F=10 R=2 S=0", name="hp", min_size=2),
    row("a 3p file (setup)", "create", file="hp/f", size=3),
    row("MAP_SHARED 3 pages: get(3) returns 1", "mmap", "T=10 F=10 R=3 S=0", map="m",
        file="hp/f", length=3),
    row("fault all 3", "touch", "T=10 F=7 R=0 S=0", map="m", page=0, count=3),
    row("unlink", "unlink", "T=10 F=7 R=0 S=0", file="hp/f"),
    row("close", "close", "T=10 F=7 R=0 S=0", file="hp/f"),
    row("munmap -> eviction: two pages refill the min reserve", "munmap", "T=10 F=10 R=2 S=0",
        map="m"),
    row("umount: subpool freed, acct(-2)", "umount", "T=10 F=10 R=0 S=0", name="hp"),
))

# T6 size=4M (max 2).  Live counterparts: P04a, P14d.
T6 = Seq("kernel-semantics.md §10 T6", pool=10, rows=rows(
    row("mount size=4M", "mount", "bfree[hp]=2", name="hp", size=2),
    row("a 3p file (setup)", "create", file="hp/f", size=3),
    row("MAP_SHARED 3 pages: get(3) over max -> ENOMEM, nothing changes", "mmap",
        "T=10 F=10 R=0 S=0 bfree[hp]=2", result="ENOMEM", map="x", file="hp/f", length=3),
    row("MAP_SHARED|MAP_NORESERVE 3 pages", "mmap", "T=10 F=10 R=0 S=0 bfree[hp]=2", map="nr",
        file="hp/f", length=3, noreserve=True),
    row("write faults idx0, idx1", "touch", "T=10 F=8 R=0 S=0 bfree[hp]=0", map="nr", page=0,
        count=2),
    row("third write fault: get(1) fails -> SIGBUS", "touch", "T=10 F=8 R=0 S=0 bfree[hp]=0",
        result="SIGBUS", map="nr", page=2),
))

# T7 Overcommit: nr_hugepages 0, nr_overcommit 3.  Live counterparts: P05a, P11d.
T7 = Seq("kernel-semantics.md §10 T7", pool=0, overcommit=3, rows=rows(
    row("mmap 2 private: gather 2 surplus; procfs 0, sysfs 2", "mmap", "T=2 F=2 R=2 S=2 N=0",
        map="a", anon=True, length=2, shared=False),
    row("fault 1", "touch", "T=2 F=1 R=1 S=2", map="a", page=0),
    row("munmap: no restore (surplus), page to buddy, close acct(-1)", "munmap",
        "T=0 F=0 R=0 S=0 N=0", map="a"),
    row("nr_overcommit 1", "pool", overcommit=1),
    row("the same mmap fails", "mmap", "T=0 F=0 R=0 S=0", result="ENOMEM", map="b", anon=True,
        length=2, shared=False),
))

# T8 Shrink below use.  Live counterpart: P05c.
T8 = Seq("kernel-semantics.md §10 T8", pool=10, rows=rows(
    row("private 4", "mmap", "T=10 F=10 R=4 S=0", map="a", anon=True, length=4, shared=False),
    row("fault 2", "touch", "T=10 F=8 R=2 S=0", map="a", page=0, count=2),
    row("echo 3 > nr_hugepages: min_count 4, 1 surplus; procfs 3, sysfs 4", "pool",
        "T=4 F=2 R=2 S=1 N=3", pages=3),
    row("fault idx2", "touch", "T=4 F=1 R=1 S=1", map="a", page=2),
    row("munmap: first freed page leaves the pool, close acct(-1)", "munmap",
        "T=3 F=3 R=0 S=0 N=3", map="a"),
))

# T9 cgroup limits (cgroup G; two variants on fresh cgroups).  Live counterparts: P07a, P07b.
T9 = Seq("kernel-semantics.md §10 T9", pool=10, rows=rows(
    row("G with rsvd.limit 2 pages", "cgroup", name="G", rsvd_limit=2),
    row("task in G", "spawn", proc="t", cgroup="G"),
    row("private mmap of 3 pages: rsvd charge over limit -> ENOMEM", "mmap",
        "G.rsvd_failcnt=1 G.u=0 G.r=0 G.failcnt=0 T=10 F=10 R=0", result="ENOMEM", proc="t",
        map="a", anon=True, length=3, shared=False),
    row("H with limit 2 pages, rsvd unlimited", "cgroup", name="H", limit=2),
    row("task in H", "spawn", proc="u", cgroup="H"),
    row("private mmap of 3 pages succeeds", "mmap", "H.r=3 H.u=0 T=10 F=10 R=3", proc="u",
        map="b", anon=True, length=3, shared=False),
    row("two faults", "touch", "H.u=2 H.r=3", proc="u", map="b", page=0, count=2),
    row("third fault exceeds the fault limit -> SIGBUS; rsvd untouched", "touch",
        "H.failcnt=1 H.rsvd_failcnt=0 H.u=2 H.r=3 T=10 F=8 R=1", result="SIGBUS", proc="u",
        map="b", page=2),
))

SEQUENCES = [T1, T2, T3, T4, T4_6, T5, T6, T7, T8, T9]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.split("§10 ")[1])
def test_trace(seq: Seq) -> None:
    replay(seq)


def _regions(system: object, file: str) -> list[list[object]]:
    return system.snapshot()["files"][file]["regions"]  # type: ignore[attr-defined, no-any-return]


def test_t1_map_regions() -> None:
    """T1: the mmap-time region carries the mapper's cgroup; faults leave the map alone."""
    system = new_system(T1)
    run_rows(system, T1, T1_ROWS[:3])
    assert _regions(system, "hp/f") == [[0, 4, "root"]]
    run_rows(system, T1, T1_ROWS[3:4], offset=3)
    assert _regions(system, "hp/f") == [[0, 4, "root"]]


def test_t2_map_regions_after_punch() -> None:
    """T2: map [0,4)A [4,6)B after the second mmap; the punch of idx0, idx1 trims [0,4)A to
    [2,4)A; punching only idx1 instead splits it into [0,1)A [2,4)A."""
    system = new_system(T2)
    run_rows(system, T2, T2_PREFIX)
    assert _regions(system, "hp/f") == [[0, 4, "A"], [4, 6, "B"]]
    run_rows(system, T2, T2.rows[len(T2_PREFIX):], offset=len(T2_PREFIX))
    assert _regions(system, "hp/f") == [[2, 4, "A"], [4, 6, "B"]]

    other = new_system(T2)
    run_rows(other, T2, T2_PREFIX)
    run_rows(other, T2, rows(row("punch only idx1: split, A.r -1", "punch",
                                 "T=10 F=9 R=4 S=0 A.u=1 A.r=3 B.r=2", file="hp/f",
                                 offset=1, length=1)))
    assert _regions(other, "hp/f") == [[0, 1, "A"], [2, 4, "A"], [4, 6, "B"]]


# -- Other kernel-semantics.md claims that no live measurement covers ---------------------
# Expected values by reasoning from the section named (nothing measured contradicts them).

# §7.2: truncation drops the reservations beyond the new size for any size change, growing
# included: a read-only shared mmap of 4 pages of an empty file (read-only mappings do not
# extend the file, §5.1), then ftruncate(1p) releases 3 of the 4 reservations.
GROW_TRUNCATE = Seq("kernel-semantics.md §7.2 (grow drops reservations beyond)", pool=8,
                    rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("an empty file", "create", file="hp/f"),
    row("read-only shared mmap of 4p: file stays empty", "mmap", "R=4 size[hp/f]=0", map="r",
        file="hp/f", length=4, writable=False),
    row("ftruncate(1p) grows, but drops [1, end)", "truncate", "T=8 F=8 R=1 S=0 size[hp/f]=1",
        file="hp/f", size=1),
    row("munmap: the inode keeps its reservation", "munmap", "R=1", map="r"),
    row("ftruncate(0)", "truncate", "R=0", file="hp/f", size=0),
))

# §5.1 and §6.4: a writable mmap raises i_size to the mapped length (private included); a
# read-only private mapping of an empty file does not, and its first fault is SIGBUS although
# the private reservation exists.
PRIVATE_EOF = Seq("kernel-semantics.md §5.1/§6.4 (private mapping and EOF)", pool=8, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("an empty file", "create", file="hp/e"),
    row("read-only private mmap 2p: reserved, file stays empty", "mmap",
        "R=2 size[hp/e]=0", map="ro", file="hp/e", length=2, shared=False, writable=False),
    row("read fault p0 beyond EOF -> SIGBUS", "touch", "F=8 R=2", result="SIGBUS", map="ro",
        page=0, write=False),
    row("writable private mmap 3p raises i_size to 3", "mmap", "R=5 size[hp/e]=3", map="rw",
        file="hp/e", length=3, shared=False),
    row("now the read-only mapping can fault p0 (hole: private page)", "touch", "F=7 R=4",
        map="ro", page=0, write=False),
    row("private writes never fill the file", "touch", "F=6 R=3 blocks[hp/e]=0", map="rw",
        page=0),
    row("munmap ro", "munmap", "F=7 R=2", map="ro"),
    row("munmap rw", "munmap", "T=8 F=8 R=0 S=0", map="rw"),
))

# §7.1: partial munmap in the middle of an owner mapping: each piece releases its own
# unconsumed range at close, and the whole-range rsvd uncharge is per piece.
MIDDLE_MUNMAP = Seq("kernel-semantics.md §7.1 (partial munmap of a private mapping)", pool=8,
                    rows=rows(
    row("private anon 4p", "mmap", "R=4 rt.r=4", map="a", anon=True, length=4, shared=False),
    row("write p0", "touch", "F=7 R=3 rt.u=1 rt.r=4", map="a", page=0),
    row("munmap p1, p2: two unconsumed reservations go, rsvd cg -2", "munmap",
        "F=7 R=1 rt.u=1 rt.r=2", map="a", offset=1, length=2),
    row("munmap p0: the page is freed (restore, then close takes it back)", "munmap",
        "F=8 R=1 rt.u=0 rt.r=1", map="a", offset=0, length=1),
    row("munmap p3", "munmap", "T=8 F=8 R=0 S=0 rt.u=0 rt.r=0", map="a", offset=3, length=1),
))

# §7.1: exit of the owner is munmap of everything: the P14a underflow (measured with munmap)
# happens the same way when the owner exits while a forked child still maps its pages.
OWNER_EXIT = Seq("kernel-semantics.md §7.1 (owner exits before its child)", pool=4, rows=rows(
    row("owner", "spawn", proc="owner"),
    row("2p private", "mmap", proc="owner", map="a", anon=True, length=2, shared=False),
    row("both written", "touch", "T=4 F=2 R=0 S=0", proc="owner", map="a", page=0, count=2),
    row("fork", "fork", proc="owner", child="kid"),
    row("owner exits: Rsvd -2 (2^64 - 2)", "exit", "T=4 F=2 R=-2 S=0", proc="owner"),
    row("child exits: both pages freed with restore", "exit", "T=4 F=4 R=0 S=0", proc="kid"),
))

# §7.3: a hole punch zaps the pages of every VMA of the file, private COW copies included; an
# owner's zapped anon page gets its reservation back (no surplus), the page-cache page is
# freed and loses its map entry.
PUNCH_PRIVATE = Seq("kernel-semantics.md §7.3 (punch zaps private COW pages)", pool=8,
                    rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("a file", "create", file="hp/f"),
    row("fallocate 2p", "fallocate", "F=6 R=0 blocks[hp/f]=2", file="hp/f", offset=0,
        length=2),
    row("private mmap 2p", "mmap", "F=6 R=2", map="p", file="hp/f", length=2, shared=False),
    row("write p0: COW of the page-cache page consumes the reservation", "touch", "F=5 R=1",
        map="p", page=0),
    row("punch p0: private copy zapped (restored), page-cache page freed", "punch",
        "F=7 R=2 blocks[hp/f]=1", file="hp/f", offset=0, length=1),
    row("write p0 again: a hole now, REUSE of the restored reservation", "touch", "F=6 R=1",
        map="p", page=0),
    row("munmap", "munmap", "F=7 R=0", map="p"),
    row("ftruncate(0)", "truncate", "T=8 F=8 R=0 S=0", file="hp/f", size=0),
))

CLAIMS = [GROW_TRUNCATE, PRIVATE_EOF, MIDDLE_MUNMAP, OWNER_EXIT, PUNCH_PRIVATE]


@pytest.mark.parametrize("seq", CLAIMS, ids=lambda s: s.name.split(" ", 2)[2])
def test_unmeasured_claim(seq: Seq) -> None:
    replay(seq)
