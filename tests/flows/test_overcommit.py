"""Overcommit, surplus pages and resizing the pool: live-kernel.md §3.5 (P05a, P05b, P05c)
and §4.3 P11d (surplus pages charged to a cgroup).

Expectations are the measured counter lines; ``N`` is /proc/sys/vm/nr_hugepages (the
"sysctl=" value of the probe), which differs from T (sysfs nr_hugepages) while surplus pages
exist.  Also covers traces T7 and T8 (replayed in test_traces.py; P05a/P05c are their measured
counterparts).
"""

from __future__ import annotations

import pytest
from helpers import Seq, replay, row, rows

# live-kernel.md §3.5 P05a: surplus pages allocated at reservation time (baseline pool 0).
# "mmap(3p more)" / "mmap(2p more)" map the next pages of the same file (offset 4).
P05A = Seq("live-kernel.md §3.5 P05a", pool=0, rows=rows(
    row("nr_hugepages=2 nr_overcommit=4 -> sysctl=2 sysfs.nr=2 ovc=4", "pool",
        "T=2 F=2 R=0 S=0 N=2", pages=2, overcommit=4),
    row("mount (setup)", "mount", name="hp"),
    row("create the file (setup)", "create", "T=2 F=2 R=0 S=0", file="hp/f", size=6),
    row("mmap(4p SHARED) needs 2 surplus", "mmap", "T=4 F=4 R=4 S=2", map="m", file="hp/f",
        length=4),
    row("write all 4", "touch", "T=4 F=0 R=0 S=2", map="m", page=0, count=4),
    row("mmap(3p more): needs 3 surplus, 2 left", "mmap", "T=4 F=0 R=0 S=2", result="ENOMEM",
        map="three", file="hp/f", offset=4, length=3),
    row("mmap(2p more): exactly the overcommit", "mmap", "T=6 F=2 R=2 S=4", map="two",
        file="hp/f", offset=4, length=2),
    row("munmap the 2p (unfaulted; reservation stays with inode)", "munmap", "T=6 F=2 R=2 S=4",
        map="two"),
    row("ftruncate(4p) -> reservation dropped", "truncate", "T=4 F=0 R=0 S=2", file="hp/f",
        size=4),
    row("munmap 4p (pages remain in page cache)", "munmap", "T=4 F=0 R=0 S=2", map="m"),
    row("ftruncate(0) -> surplus pages freed", "truncate", "T=2 F=2 R=0 S=0", file="hp/f",
        size=0),
))

# live-kernel.md §3.5 P05b: surplus pages allocated at fault time (NORESERVE); baseline pool 2
# with the overcommit of 4 left by P05a.  "anon private: NORESERVE 2p + reserved 6p -> sysctl=2
# ovc=4": the probe wrote nr_hugepages=2 and nr_overcommit=4 in that row, replayed as a pool
# step before the two mappings.
P05B = Seq("live-kernel.md §3.5 P05b", pool=2, overcommit=4, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("a 16p file (setup)", "create", "T=2 F=2 R=0 S=0", file="hp/f", size=16),
    row("mmap(16p SHARED|NORESERVE)", "mmap", "T=2 F=2 R=0 S=0", map="nr", file="hp/f",
        length=16, noreserve=True),
    row("POPULATE_WRITE 6p (2 persistent + 4 surplus)", "touch", "T=6 F=0 R=0 S=4", map="nr",
        page=0, count=6),
    row("POPULATE_WRITE p6 (overcommit exhausted) -> EFAULT", "touch", "T=6 F=0 R=0 S=4",
        result="SIGBUS", map="nr", page=6),
    row("set nr_overcommit=1 while 4 surplus in use -> sysctl=2 sysfs.nr=6 ovc=1", "pool",
        "T=6 F=0 R=0 S=4 N=2", overcommit=1),
    row("punch p5 (a surplus page is freed)", "punch", "T=5 F=0 R=0 S=3", file="hp/f",
        offset=5, length=1),
    row("punch p4", "punch", "T=4 F=0 R=0 S=2", file="hp/f", offset=4, length=1),
    row("raise nr_hugepages=4 with 2 surplus in use -> sysctl=4 sysfs.nr=4", "pool",
        "T=4 F=0 R=0 S=0 N=4", pages=4),
    row("raise nr_hugepages=6 -> sysctl=6 sysfs.nr=6", "pool", "T=6 F=2 R=0 S=0 N=6", pages=6),
    row("ftruncate(0)", "truncate", "T=6 F=6 R=0 S=0", file="hp/f", size=0),
    row("anon private [pool 2, overcommit 4]", "pool", pages=2, overcommit=4),
    row("anon private: NORESERVE 2p [mmap]", "mmap", map="anr", anon=True, length=2,
        shared=False, noreserve=True),
    row("anon private: NORESERVE 2p + reserved 6p -> sysctl=2 sysfs.nr=6 ovc=4", "mmap",
        "T=6 F=6 R=6 S=4 N=2", map="ar", anon=True, length=6, shared=False),
    row("POPULATE_WRITE on NORESERVE 2p -> EFAULT", "touch", "T=6 F=6 R=6 S=4",
        result="SIGBUS", map="anr", page=0, count=2),
    row("munmap all [NORESERVE]", "munmap", map="anr"),
    row("munmap all -> sysctl=2 sysfs.nr=2 ovc=4", "munmap", "T=2 F=2 R=0 S=0 N=2", map="ar"),
))

# live-kernel.md §3.5 P05c: shrinking nr_hugepages while pages are reserved / in use
# (baseline pool 2; the first row sets ovc=0).  "nr=3; mmap 3p (all reserved)" maps 3 pages of
# the same (now empty) file after writing nr_hugepages=3.
P05C = Seq("live-kernel.md §3.5 P05c", pool=2, overcommit=4, rows=rows(
    row("nr_hugepages=8 ovc=0 -> sysctl=8 sysfs.nr=8", "pool", "T=8 F=8 R=0 S=0 N=8", pages=8,
        overcommit=0),
    row("mount (setup)", "mount", name="hp"),
    row("create the file (setup)", "create", file="hp/f", size=6),
    row("mmap 6p [mmap]", "mmap", map="m", file="hp/f", length=6),
    row("mmap 6p + write 3 (3 used, 3 rsvd, 2 idle)", "touch", "T=8 F=5 R=3 S=0", map="m",
        page=0, count=3),
    row("echo 4 > nr_hugepages -> sysctl=4 sysfs.nr=6 node0.surp=2", "pool",
        "T=6 F=3 R=3 S=2 N=4", pages=4),
    row("echo 0 > nr_hugepages -> sysctl=0 sysfs.nr=6 node0.surp=6", "pool",
        "T=6 F=3 R=3 S=6 N=0", pages=0),
    row("write p3 (reserved page)", "touch", "T=6 F=2 R=2 S=6", map="m", page=3),
    row("punch p0 (in-use surplus freed)", "punch", "T=5 F=2 R=2 S=5", file="hp/f", offset=0,
        length=1),
    row("munmap (pages stay in page cache)", "munmap", "T=5 F=2 R=2 S=5", map="m"),
    row("ftruncate(0)", "truncate", "T=0 F=0 R=0 S=0", file="hp/f", size=0),
    row("after -> sysctl=0 sysfs.nr=0", None, "T=0 F=0 R=0 S=0 N=0"),
    row("nr=3 [pool]", "pool", pages=3),
    row("nr=3; mmap 3p (all reserved)", "mmap", "T=3 F=3 R=3 S=0", map="m", file="hp/f",
        length=3),
    row("echo 1 > nr_hugepages -> sysctl=1 sysfs.nr=3 node0.surp=2", "pool",
        "T=3 F=3 R=3 S=2 N=1", pages=1),
    row("echo 5 > nr_hugepages -> sysctl=5 sysfs.nr=5 node0.surp=0", "pool",
        "T=5 F=5 R=3 S=0 N=5", pages=5),
    row("ftruncate(0)", "truncate", "T=5 F=5 R=0 S=0", file="hp/f", size=0),
))

# live-kernel.md §4.3 P11d: cgroup charges for surplus pages (nr=2, overcommit=4; baseline
# pool 12, cgroup A).  The first row shows T=5: the probe wrote nr=2 ovc=4 before mapping.
P11D = Seq("live-kernel.md §4.3 P11d", pool=12, rows=rows(
    row("cgroup A (setup)", "cgroup", name="A"),
    row("the probe joins A (setup)", "attach", "T=12 F=12 R=0 S=0 A.u=0 A.r=0", proc="init",
        cgroup="A"),
    row("(nr=2, overcommit=4)", "pool", pages=2, overcommit=4),
    row("mount (setup)", "mount", name="hp"),
    row("a 5p file (setup)", "create", file="hp/f", size=5),
    row("[A] mmap 5p (3 surplus)", "mmap", "T=5 F=5 R=5 S=3 A.u=0 A.r=5", map="m",
        file="hp/f", length=5),
    row("[A] populate 5p", "touch", "T=5 F=0 R=0 S=3 A.u=5 A.r=5", map="m", page=0, count=5),
    row("[A] ftruncate(0)", "truncate", "T=2 F=2 R=0 S=0 A.u=0 A.r=0", file="hp/f", size=0),
))

SEQUENCES = [P05A, P05B, P05C, P11D]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.rsplit(" ", 1)[-1])
def test_measured_sequence(seq: Seq) -> None:
    replay(seq)


# Not measured (the live probes used 2 MB pages only): 1 GB pages shrunk below their
# reservations.  kernel-semantics §8.1 makes the excess surplus (the pool stops at in use +
# reserved, even with overcommit 0, as P05c measured for 2 MB); §4.3 then releases free
# surplus pages when the reservations go, with no exception for gigantic pages (in 6.18
# return_unused_surplus_pages skips only when gigantic pages have no runtime support, and
# x86-64 has it).  So the munmap empties the pool, exactly as for 2 MB pages (T7, P05c).
GIGANTIC_SHRINK = Seq("kernel-semantics.md §4.3/§8.1 with 1G pages", pool=2, pagesize="1G",
                      rows=rows(
    row("private mmap of 2 pages", "mmap", "T=2 F=2 R=2 S=0 N=2", map="a", anon=True,
        length=2, shared=False),
    row("nr_hugepages=0: both pages reserved, kept as surplus", "pool", "T=2 F=2 R=2 S=2 N=0",
        pages=0),
    row("munmap: reservations returned, the free surplus pages leave the pool", "munmap",
        "T=0 F=0 R=0 S=0 N=0", map="a"),
))


def test_gigantic_surplus_pages_leave_when_unreserved() -> None:
    replay(GIGANTIC_SHRINK)
