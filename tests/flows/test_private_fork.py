"""MAP_PRIVATE, anonymous MAP_HUGETLB and fork/COW: live-kernel.md §3.2 (P02a-P02f) and §3.6
(P11a, P11f).

The expectations are the measured counter lines.  A probe "child" that touches a page and
dies is fork + touch + exit (`child_touch`); "[A]" means the acting process is in cgroup A.
Also covers kernel-semantics.md §5.4 rows "MAP_PRIVATE (file or anon)" (P02a, P02c) and
"MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB" (P02c, P02f), §9.2 rows "private mmap", "owner fault
consuming reservation", "owner COW of its anon page / child fault" (P11f; cgroup side of the
COW in test_cgroup_flows.py P06c), and traces T3 and T4 (replayed in test_traces.py).
"""

from __future__ import annotations

import pytest
from helpers import Seq, child_touch, replay, row, rows

# live-kernel.md §3.2 P02a: MAP_PRIVATE of a file with holes (pool 8).
P02A = Seq("live-kernel.md §3.2 P02a", pool=8, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("empty 4p file (setup)", "create", "T=8 F=8 R=0 S=0", file="hp/f", size=4),
    row("mmap(4p, PRIVATE) of empty 4p file", "mmap", "T=8 F=8 R=4 S=0", map="m",
        file="hp/f", length=4, shared=False),
    row("read fault p0 (hole)", "touch", "T=8 F=7 R=3 S=0", map="m", page=0, write=False),
    row("write fault p0 (after read)", "touch", "T=8 F=7 R=3 S=0", map="m", page=0),
    row("write fault p1", "touch", "T=8 F=6 R=2 S=0", map="m", page=1),
    row("POPULATE_READ p2", "touch", "T=8 F=5 R=1 S=0", map="m", page=2, write=False),
    row("POPULATE_WRITE p2", "touch", "T=8 F=5 R=1 S=0", map="m", page=2),
    row("MADV_DONTNEED p1 (private anon page)", "madvise", "T=8 F=6 R=2 S=0", map="m",
        page=1, advice="dontneed"),
    row("write fault p1 again after DONTNEED", "touch", "T=8 F=5 R=1 S=0", map="m", page=1),
    row("munmap p3 only (unfaulted, reserved)", "munmap", "T=8 F=5 R=0 S=0", map="m",
        offset=3, length=1),
    row("munmap p0..p2", "munmap", "T=8 F=8 R=0 S=0", map="m", offset=0, length=3),
    row("close+unlink [close]", "close", file="hp/f"),
    row("close+unlink", "unlink", "T=8 F=8 R=0 S=0", file="hp/f"),
))

# live-kernel.md §3.2 P02b: MAP_PRIVATE over pages present in the page cache (pool 8).
P02B = Seq("live-kernel.md §3.2 P02b", pool=8, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("create the file (setup)", "create", "T=8 F=8 R=0 S=0", file="hp/f"),
    row("fallocate(0, 2p)", "fallocate", "T=8 F=6 R=0 S=0", file="hp/f", offset=0, length=2),
    row("mmap(2p, PRIVATE)", "mmap", "T=8 F=6 R=2 S=0", map="p", file="hp/f", length=2,
        shared=False),
    row("read fault p0 (maps page-cache page)", "touch", "T=8 F=6 R=2 S=0", map="p", page=0,
        write=False),
    row("write fault p0 (COW -> private copy)", "touch", "T=8 F=5 R=1 S=0", map="p", page=0),
    row("write fault p1 (COW directly)", "touch", "T=8 F=4 R=0 S=0", map="p", page=1),
    row("munmap", "munmap", "T=8 F=6 R=0 S=0", map="p"),
    row("mmap(2p, SHARED) of same file", "mmap", "T=8 F=6 R=0 S=0", map="s", file="hp/f",
        length=2),
    row("mmap(2p, PRIVATE)", "mmap", "T=8 F=6 R=2 S=0", map="p", file="hp/f", length=2,
        shared=False),
    row("ftruncate(0) while private copy absent", "truncate", "T=8 F=8 R=2 S=0", file="hp/f",
        size=0),
    child_touch("private read p0 after truncate -> signal:SIGBUS", "p", 0, "T=8 F=8 R=2 S=0",
                "SIGBUS", write=False),
    row("cleanup [munmap s]", "munmap", map="s"),
    row("cleanup [munmap p]", "munmap", map="p"),
    row("cleanup [close]", "close", file="hp/f"),
    row("cleanup", "unlink", "T=8 F=8 R=0 S=0", file="hp/f"),
))

# live-kernel.md §3.2 P02c: anonymous MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB (pool 8).
# "mmap(2p, MAP_HUGETLB|MAP_HUGE_2MB)": the page size flag is the scenario's pagesize; the
# mapping is replayed as a private anonymous one.
P02C = Seq("live-kernel.md §3.2 P02c", pool=8, rows=rows(
    row("mmap(3p anon private hugetlb)", "mmap", "T=8 F=8 R=3 S=0", map="a", anon=True,
        length=3, shared=False),
    row("read fault p0", "touch", "T=8 F=7 R=2 S=0", map="a", page=0, write=False),
    row("write fault p1", "touch", "T=8 F=6 R=1 S=0", map="a", page=1),
    row("munmap", "munmap", "T=8 F=8 R=0 S=0", map="a"),
    row("mmap(3p anon private, MAP_POPULATE)", "mmap", "T=8 F=5 R=0 S=0", map="a", anon=True,
        length=3, shared=False, populate=True),
    row("munmap", "munmap", "T=8 F=8 R=0 S=0", map="a"),
    row("mmap(9p anon private) > pool", "mmap", "T=8 F=8 R=0 S=0", result="ENOMEM", map="big",
        anon=True, length=9, shared=False),
    row("mmap(2p anon SHARED hugetlb)", "mmap", "T=8 F=8 R=2 S=0", map="s", anon=True,
        length=2),
    row("write fault p0", "touch", "T=8 F=7 R=1 S=0", map="s", page=0),
    row("munmap", "munmap", "T=8 F=8 R=0 S=0", map="s"),
    row("mmap(2p, MAP_HUGETLB|MAP_HUGE_2MB)", "mmap", "T=8 F=8 R=2 S=0", map="h", anon=True,
        length=2, shared=False),
    row("munmap", "munmap", "T=8 F=8 R=0 S=0", map="h"),
))

# live-kernel.md §3.2 P02d: fork + COW with spare pages (pool 8).
P02D = Seq("live-kernel.md §3.2 P02d", pool=8, rows=rows(
    row("parent: mmap 2p private anon [mmap]", "mmap", map="a", anon=True, length=2,
        shared=False),
    row("parent: mmap 2p private anon + write both", "touch", "T=8 F=6 R=0 S=0", map="a",
        page=0, count=2),
    row("fork() (child alive)", "fork", "T=8 F=6 R=0 S=0", child="kid"),
    row("child read p0", "touch", "T=8 F=6 R=0 S=0", proc="kid", map="a", page=0,
        write=False),
    row("child write p0 (COW in child)", "touch", "T=8 F=5 R=0 S=0", proc="kid", map="a",
        page=0),
    row("parent write p1 (COW in parent)", "touch", "T=8 F=4 R=0 S=0", map="a", page=1),
    row("parent write p0 (child already has own copy)", "touch", "T=8 F=4 R=0 S=0", map="a",
        page=0),
    row("child exited", "exit", "T=8 F=6 R=0 S=0", proc="kid"),
    row("parent munmap", "munmap", "T=8 F=8 R=0 S=0", map="a"),
))

# live-kernel.md §3.2 P02e: fork + COW with the pool exhausted: who gets SIGBUS? (pool 8)
P02E = Seq("live-kernel.md §3.2 P02e", pool=8, rows=rows(
    row("nr_hugepages=2", "pool", "T=2 F=2 R=0 S=0", pages=2),
    row("parent: mmap 2p [mmap]", "mmap", map="a", anon=True, length=2, shared=False),
    row("parent: mmap 2p + write both (pool full)", "touch", "T=2 F=0 R=0 S=0", map="a",
        page=0, count=2),
    child_touch("child: write p0 (COW, no free page) -> signal:SIGBUS", "a", 0,
                "T=2 F=0 R=0 S=0", "SIGBUS"),
    row("fork child (sleeps)", "fork", "T=2 F=0 R=0 S=0", child="sleeper"),
    row("parent write p0 (COW, no free page)", "touch", "T=2 F=0 R=0 S=0", map="a", page=0),
    row("child read p0 after parent's COW -> signal:SIGBUS", "touch", "T=2 F=0 R=0 S=0",
        result="SIGBUS", proc="sleeper", map="a", page=0, write=False),
    row("the SIGBUSed child dies", "exit", "T=2 F=0 R=0 S=0", proc="sleeper"),
    row("munmap", "munmap", "T=2 F=2 R=0 S=0", map="a"),
))

# live-kernel.md §3.2 P02f: fork of MAP_SHARED hugetlb, no COW, no new pages.  The baseline
# is pool 2; the measured mmap row shows T=8, i.e. the probe set nr_hugepages=8 first (not a
# row of its own), replayed here as a pool step before the mmap.
P02F = Seq("live-kernel.md §3.2 P02f", pool=2, rows=rows(
    row("(the probe's pool 8 before the mmap)", "pool", "T=8 F=8 R=0 S=0", pages=8),
    row("mmap 2p anon shared", "mmap", "T=8 F=8 R=2 S=0", map="s", anon=True, length=2),
    child_touch("child write p0 -> exit:0", "s", 0, "T=8 F=7 R=1 S=0"),
    child_touch("child write p1 (POPULATE_WRITE) -> exit:0", "s", 1, "T=8 F=6 R=0 S=0"),
    row("munmap", "munmap", "T=8 F=8 R=0 S=0", map="s"),
))

# live-kernel.md §3.6 P11a: private write fault then read fault (pool 12).
# Skipped rows: "pread(fd) 1 byte from hole p1", "pread(fd) beyond EOF" and "pwrite(fd)"
# (read(2)/write(2) are not format 1 operations), and "shared write p0; pread(fd,p0)": its
# counters (F=11 R=0 from F=11 R=1) come from a shared mapping the probe set up without a row
# of its own (a 2p shared mmap plus a write would give R=2), so the step is not replayable.
P11A = Seq("live-kernel.md §3.6 P11a", pool=12, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("2p file (setup)", "create", "T=12 F=12 R=0 S=0", file="hp/f", size=2),
    row("mmap(2p PRIVATE file)", "mmap", "T=12 F=12 R=2 S=0", map="p", file="hp/f", length=2,
        shared=False),
    row("write p0", "touch", "T=12 F=11 R=1 S=0", map="p", page=0),
    row("read p0", "touch", "T=12 F=11 R=1 S=0", map="p", page=0, write=False),
    row("cleanup [munmap]", "munmap", map="p"),
    row("cleanup [close]", "close", file="hp/f"),
    row("cleanup", "unlink", "T=12 F=12 R=0 S=0", file="hp/f"),
))

# live-kernel.md §3.6 P11f: fork with UNCONSUMED private reservations (baseline pool 2,
# cgroup A).  The first row shows T=4: the probe set the pool to 4 ("0 unreserved free")
# before mapping, replayed as a pool step.  A POPULATE_WRITE in a child that exits with the
# errno (exit:14 = EFAULT) is a touch with result SIGBUS.
P11F = Seq("live-kernel.md §3.6 P11f", pool=2, rows=rows(
    row("cgroup A (setup)", "cgroup", name="A"),
    row("the probe joins A (setup)", "attach", "T=2 F=2 R=0 S=0 A.u=0 A.r=0", proc="init",
        cgroup="A"),
    row("(the probe's pool 4)", "pool", pages=4),
    row("[A] parent: 4p private [mmap]", "mmap", map="a", anon=True, length=4, shared=False),
    row("[A] parent: 4p private, write p0 (3 reserved, 0 unreserved free)", "touch",
        "T=4 F=3 R=3 S=0 A.u=1 A.r=4", map="a", page=0),
    child_touch("child: write p1 (parent's reservation) -> signal:SIGBUS", "a", 1,
                "T=4 F=3 R=3 S=0 A.u=1 A.r=4", "SIGBUS"),
    child_touch("child: POPULATE_WRITE p1 (exit code = errno) -> exit:14", "a", 1,
                "T=4 F=3 R=3 S=0 A.u=1 A.r=4", "SIGBUS"),
    row("child: munmap whole range then exit [fork]", "fork", child="kid"),
    row("child: munmap whole range then exit [munmap]", "munmap", proc="kid", map="a"),
    row("child: munmap whole range then exit -> exit:0", "exit", "T=4 F=3 R=3 S=0 A.u=1 A.r=4",
        proc="kid"),
    row("nr_hugepages=5 (1 unreserved free)", "pool", "T=5 F=4 R=3 S=0 A.u=1 A.r=4", pages=5),
    row("child: write p1 [fork]", "fork", child="kid"),
    row("child: write p1 (uses the unreserved page), alive", "touch",
        "T=5 F=3 R=3 S=0 A.u=2 A.r=5", proc="kid", map="a", page=1),
    row("parent: write p1 (consumes own reservation)", "touch", "T=5 F=2 R=2 S=0 A.u=3 A.r=5",
        map="a", page=1),
    row("child exit", "exit", "T=5 F=3 R=2 S=0 A.u=2 A.r=4", proc="kid"),
    row("parent munmap", "munmap", "T=5 F=5 R=0 S=0 A.u=0 A.r=0", map="a"),
))

SEQUENCES = [P02A, P02B, P02C, P02D, P02E, P02F, P11A, P11F]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.rsplit(" ", 1)[-1])
def test_measured_sequence(seq: Seq) -> None:
    replay(seq)
