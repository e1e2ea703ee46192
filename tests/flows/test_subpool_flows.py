"""hugetlbfs size= / min_size= subpools: live-kernel.md §3.4 (P04a, P04b, P04c) and §4.3
(P11c, subpool with a cgroup).

Expectations are the measured counter lines; ``bfree[M]`` is statfs f_bfree of mount M
(-1 without size=).  Sizes in the probe are bytes: size=8M is 4 pages, min_size=4M 2 pages.
Also covers kernel-semantics.md §5.4's subpool column (get(chg) on shared mmap, get(len) on
private mmap of a file of the mount: P04a "MAP_PRIVATE 4p"; anonymous mappings charge no
subpool: P04a "anon MAP_HUGETLB not charged"), and trace T5 (min_size, replayed in
test_traces.py; P04b and P11c are its measured counterparts).
"""

from __future__ import annotations

import pytest
from helpers import Seq, child_touch, look, replay, row, rows

# live-kernel.md §3.4 P04a: size=8M (max 4 pages), pool 8.
# The file is created with 16 pages so that the NORESERVE faults at p5 fail on the subpool,
# not on EOF (the probe's file size is not shown).  "anon MAP_HUGETLB not charged" is a 1-page
# private anonymous mapping; the following "MAP_PRIVATE 4p" row shows R=4, so the probe had
# unmapped it by then (munmap replayed as its own step).  "leave file c with 2 pages" is
# replayed as fallocate of 2 pages; before the umount the scenario closes its two handles
# (umount is EBUSY while a file is open in format 1, as on the kernel).
P04A = Seq("live-kernel.md §3.4 P04a", pool=8, rows=rows(
    row("mount size=8M -> ok", "mount", "T=8 F=8 R=0 S=0 bfree[hp]=4", name="hp", size=4),
    look("statfs -> blocks=4 bfree=4 bavail=4", "T=8 F=8 R=0 S=0 bfree[hp]=4"),
    row("a 16p file (setup)", "create", "T=8 F=8 R=0 S=0 bfree[hp]=4", file="hp/f", size=16),
    row("mmap(2p SHARED) -> bfree=2", "mmap", "T=8 F=8 R=2 S=0 bfree[hp]=2", map="m",
        file="hp/f", length=2),
    row("write fault p0 -> bfree=2", "touch", "T=8 F=7 R=1 S=0 bfree[hp]=2", map="m", page=0),
    row("mmap(3p SHARED off 2p) exceeds size", "mmap", "T=8 F=7 R=1 S=0", result="ENOMEM",
        map="x", file="hp/f", offset=2, length=3),
    row("fallocate(0, p2..p4) exceeds size", "fallocate", "T=8 F=5 R=1 S=0", result="ENOSPC",
        file="hp/f", offset=2, length=3),
    look("statfs after failed fallocate -> bfree=0", "T=8 F=5 R=1 S=0 bfree[hp]=0"),
    row("fallocate(0, p4) 1 more page", "fallocate", "T=8 F=5 R=1 S=0", result="ENOSPC",
        file="hp/f", offset=4, length=1),
    look("statfs -> bfree=0", "T=8 F=5 R=1 S=0 bfree[hp]=0"),
    row("mmap(16p SHARED|NORESERVE)", "mmap", "T=8 F=5 R=1 S=0", map="nr", file="hp/f",
        length=16, noreserve=True),
    row("POPULATE_WRITE p5 (size used up) -> EFAULT", "touch", "T=8 F=5 R=1 S=0",
        result="SIGBUS", map="nr", page=5),
    child_touch("child write p5 -> signal:SIGBUS", "nr", 5, "T=8 F=5 R=1 S=0", "SIGBUS"),
    row("POPULATE_WRITE p1 (reserved)", "touch", "T=8 F=4 R=0 S=0", map="m", page=1),
    look("statfs -> bfree=0", "T=8 F=4 R=0 S=0 bfree[hp]=0"),
    row("munmap all [m]", "munmap", map="m"),
    row("munmap all -> bfree=0", "munmap", "T=8 F=4 R=0 S=0 bfree[hp]=0", map="nr"),
    row("ftruncate(0)", "truncate", "T=8 F=8 R=0 S=0 bfree[hp]=4", file="hp/f", size=0),
    look("statfs -> bfree=4", "T=8 F=8 R=0 S=0 bfree[hp]=4"),
    row("anon MAP_HUGETLB not charged to this fs -> bfree=4", "mmap",
        "T=8 F=8 R=1 S=0 bfree[hp]=4", map="anon", anon=True, length=1, shared=False),
    row("(the probe unmaps the anon page)", "munmap", "T=8 F=8 R=0 S=0 bfree[hp]=4",
        map="anon"),
    row("MAP_PRIVATE 4p of file in size=8M fs -> bfree=0", "mmap",
        "T=8 F=8 R=4 S=0 bfree[hp]=0", map="p", file="hp/f", length=4, shared=False),
    row("munmap -> bfree=4", "munmap", "T=8 F=8 R=0 S=0 bfree[hp]=4", map="p"),
    row("leave file c with 2 pages [create]", "create", file="hp/c"),
    row("leave file c with 2 pages, then umount -> bfree=2", "fallocate",
        "T=8 F=6 R=0 S=0 bfree[hp]=2", file="hp/c", offset=0, length=2),
    row("(close the scenario's handles) [c]", "close", file="hp/c"),
    row("(close the scenario's handles) [f]", "close", "T=8 F=6 R=0 S=0", file="hp/f"),
    row("after umount (file pages freed?)", "umount", "T=8 F=8 R=0 S=0", name="hp"),
))

# live-kernel.md §3.4 P04b: min_size=4M (2 pages reserved at mount), pool 8.
# "set nr_hugepages=1 (below min reserve) -> 2": the 2 is the sysfs nr_hugepages read back
# (= Total, measured T=2).  N (/proc/sys/vm/nr_hugepages) is not measured in this row; it is
# asserted as 1 by reasoning: it reads max_huge_pages = persistent = T - S = 2 - 1
# (kernel-semantics §8.1 step 3; the same rule gives the measured sysctl values of P05c).
P04B = Seq("live-kernel.md §3.4 P04b", pool=8, rows=rows(
    row("mount min_size=4M -> ok", "mount", "T=8 F=8 R=2 S=0", name="hp", min_size=2),
    look("statfs -> blocks=-1 bfree=-1 bavail=-1", "T=8 F=8 R=2 S=0 bfree[hp]=-1"),
    row("create the file (setup)", "create", "T=8 F=8 R=2 S=0", file="hp/f", size=3),
    row("mmap(1p SHARED)", "mmap", "T=8 F=8 R=2 S=0", map="a", file="hp/f", length=1),
    row("write fault p0", "touch", "T=8 F=7 R=1 S=0", map="a", page=0),
    row("mmap(2p SHARED off 1p) (total 3 > min 2)", "mmap", "T=8 F=7 R=2 S=0", map="b",
        file="hp/f", offset=1, length=2),
    row("write p1,p2", "touch", "T=8 F=5 R=0 S=0", map="b", page=0, count=2),
    row("munmap [a]", "munmap", map="a"),
    row("munmap", "munmap", "T=8 F=5 R=0 S=0", map="b"),
    row("ftruncate(1p)", "truncate", "T=8 F=7 R=2 S=0", file="hp/f", size=1),
    row("ftruncate(0)", "truncate", "T=8 F=8 R=2 S=0", file="hp/f", size=0),
    row("fallocate(0, 3p)", "fallocate", "T=8 F=5 R=0 S=0", file="hp/f", offset=0, length=3),
    row("ftruncate(0)", "truncate", "T=8 F=8 R=2 S=0", file="hp/f", size=0),
    row("anon private 2p (other subpool)", "mmap", "T=8 F=8 R=4 S=0", map="anon", anon=True,
        length=2, shared=False),
    row("munmap", "munmap", "T=8 F=8 R=2 S=0", map="anon"),
    row("set nr_hugepages=1 (below min reserve) -> 2", "pool", "T=2 F=2 R=2 S=1 N=1",
        pages=1),
    row("nr_hugepages=8 again", "pool", "T=8 F=8 R=2 S=0 N=8", pages=8),
    row("(close the scenario's handle)", "close", "T=8 F=8 R=2 S=0", file="hp/f"),
    row("umount", "umount", "T=8 F=8 R=0 S=0", name="hp"),
))

# live-kernel.md §3.4 P04c: invalid / edge mount options, pool 8.
# Skipped rows: "mount size=50% (of pool)" and its statfs (percent sizes), "mount size=3M
# (rounded?)" and its statfs, "mount min_size=3M (rounded?)" and its umount (sizes that are
# not whole huge pages): format 1 sizes are whole pages, so the rounding cannot be expressed.
# "cleanup -> bfree=4 R=2": munmap plus ftruncate(0) of the file (the probe's cleanup ops are
# not shown; any op that drops the file's 3 reservations gives the measured line).
P04C = Seq("live-kernel.md §3.4 P04c", pool=8, rows=rows(
    row("mount min_size=20M (> pool 8p) -> Cannot allocate memory", "mount",
        "T=8 F=8 R=0 S=0", result="ENOMEM", name="big", min_size=10),
    row("mount size=4M,min_size=8M (min>max) -> bad option", "mount", "T=8 F=8 R=0 S=0",
        result="EINVAL", name="bad", size=2, min_size=4),
    row("mount size=8M,min_size=4M -> ok", "mount", "T=8 F=8 R=2 S=0 bfree[hp]=4", name="hp",
        size=4, min_size=2),
    look("statfs -> blocks=4 bfree=4 bavail=4", "T=8 F=8 R=2 S=0 bfree[hp]=4"),
    row("a file (setup)", "create", "T=8 F=8 R=2 S=0 bfree[hp]=4", file="hp/f", size=5),
    row("mmap(3p) -> bfree=1", "mmap", "T=8 F=8 R=3 S=0 bfree[hp]=1", map="m", file="hp/f",
        length=3),
    row("mmap(2p more) > size", "mmap", "T=8 F=8 R=3 S=0", result="ENOMEM", map="more",
        file="hp/f", offset=3, length=2),
    row("cleanup [munmap]", "munmap", map="m"),
    row("cleanup -> bfree=4", "truncate", "T=8 F=8 R=2 S=0 bfree[hp]=4", file="hp/f", size=0),
    row("(close the scenario's handle)", "close", file="hp/f"),
    row("umount", "umount", "T=8 F=8 R=0 S=0", name="hp"),
    row("mount min_size=4M with nr_hugepages=0 [pool 0]", "pool", "T=0 F=0 R=0 S=0", pages=0),
    row("mount min_size=4M with nr_hugepages=0 -> Cannot allocate memory", "mount",
        "T=0 F=0 R=0 S=0", result="ENOMEM", name="zero", min_size=2),
))

# live-kernel.md §4.3 P11c: cgroup charges with a min_size=4M subpool (pool 12, cgroup A).
# The min_size reservation is charged to no cgroup.  Before the umount the mapping and the
# scenario's handle go (unmount is EBUSY otherwise); the probe's own steps are not shown.
P11C = Seq("live-kernel.md §4.3 P11c", pool=12, rows=rows(
    row("cgroup A (setup)", "cgroup", name="A"),
    row("the probe joins A (setup)", "attach", "T=12 F=12 R=0 S=0 A.u=0 A.r=0", proc="init",
        cgroup="A"),
    row("[A] mount min_size=4M (2p)", "mount", "T=12 F=12 R=2 S=0 A.u=0 A.r=0", name="hp",
        min_size=2),
    row("[A] a 3p file (setup)", "create", file="hp/f", size=3),
    row("[A] mmap 3p", "mmap", "T=12 F=12 R=3 S=0 A.u=0 A.r=3", map="m", file="hp/f",
        length=3),
    row("[A] populate 3p", "touch", "T=12 F=9 R=0 S=0 A.u=3 A.r=3", map="m", page=0, count=3),
    row("[A] ftruncate(0)", "truncate", "T=12 F=12 R=2 S=0 A.u=0 A.r=0", file="hp/f", size=0),
    row("(munmap before umount)", "munmap", map="m"),
    row("(close before umount)", "close", "T=12 F=12 R=2 S=0 A.u=0 A.r=0", file="hp/f"),
    row("umount", "umount", "T=12 F=12 R=0 S=0 A.u=0 A.r=0", name="hp"),
))

SEQUENCES = [P04A, P04B, P04C, P11C]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.rsplit(" ", 1)[-1])
def test_measured_sequence(seq: Seq) -> None:
    replay(seq)
