"""memfd, SysV shm and MAP_NORESERVE: live-kernel.md §3.3 (P03a, P03b, P03c).

Expectations are the measured counter lines (pool 8).  Also covers kernel-semantics.md §5.4
rows "SHM_HUGETLB" (P03b) and "any + MAP_NORESERVE" (P03c), and §9.2 row "fault on
unreserved shared index (NORESERVE/hole)" for the pool counters (its cgroup side is P06d in
test_cgroup_flows.py).
"""

from __future__ import annotations

import pytest
from helpers import Seq, child_touch, replay, row, rows

# live-kernel.md §3.3 P03a: memfd_create(MFD_HUGETLB).
# "memfd(MFD_HUGE_2MB) + mmap(2p PRIVATE)": the probe's memfd size is not shown; it is given
# 2 pages here (a writable private mmap would raise it to 2 anyway, kernel-semantics §5.1).
# Skipped row: "write(2) on hugetlb memfd -> EINVAL" (write(2) is not a format 1 operation).
P03A = Seq("live-kernel.md §3.3 P03a", pool=8, rows=rows(
    row("memfd_create(MFD_HUGETLB)", "memfd", "T=8 F=8 R=0 S=0", file="memfd:a"),
    row("ftruncate(3p)", "truncate", "T=8 F=8 R=0 S=0", file="memfd:a", size=3),
    row("mmap(3p SHARED)", "mmap", "T=8 F=8 R=3 S=0", map="m", file="memfd:a", length=3),
    row("write fault p0", "touch", "T=8 F=7 R=2 S=0", map="m", page=0),
    row("fallocate(0, p1)", "fallocate", "T=8 F=6 R=1 S=0", file="memfd:a", offset=1,
        length=1),
    row("fallocate(PUNCH|KEEP, p0)", "punch", "T=8 F=7 R=1 S=0", file="memfd:a", offset=0,
        length=1),
    row("munmap (fd still open)", "munmap", "T=8 F=7 R=1 S=0", map="m"),
    row("close(fd) -> inode gone", "close", "T=8 F=8 R=0 S=0", file="memfd:a"),
    row("memfd(MFD_HUGE_2MB) [memfd]", "memfd", file="memfd:b", size=2),
    row("memfd(MFD_HUGE_2MB) + mmap(2p PRIVATE)", "mmap", "T=8 F=8 R=2 S=0", map="p",
        file="memfd:b", length=2, shared=False),
    row("close(fd) while private-mapped", "close", "T=8 F=8 R=2 S=0", file="memfd:b"),
    row("write fault p0", "touch", "T=8 F=7 R=1 S=0", map="p", page=0),
    row("munmap", "munmap", "T=8 F=8 R=0 S=0", map="p"),
))

# live-kernel.md §3.3 P03b: SysV shm SHM_HUGETLB.
# "shmget(3p+4k) size rounding": a byte size is not expressible; the segment it gave (4
# pages after rounding up) is replayed as shmget of 4 pages, which checks the reservation and
# the IPC_RMID of a never-attached segment, not the rounding itself.
P03B = Seq("live-kernel.md §3.3 P03b", pool=8, rows=rows(
    row("shmget(3p, SHM_HUGETLB) -> id=0", "shmget", "T=8 F=8 R=3 S=0", shm="s", size=3),
    row("shmat", "mmap", "T=8 F=8 R=3 S=0", map="m", shm="s"),
    row("write fault p0", "touch", "T=8 F=7 R=2 S=0", map="m", page=0),
    row("read fault p1", "touch", "T=8 F=6 R=1 S=0", map="m", page=1, write=False),
    row("shmdt (segment persists)", "munmap", "T=8 F=6 R=1 S=0", map="m"),
    row("shmat again", "mmap", "T=8 F=6 R=1 S=0", map="m", shm="s"),
    row("IPC_RMID while attached", "shmrm", "T=8 F=6 R=1 S=0", shm="s"),
    row("shmdt -> destroyed", "munmap", "T=8 F=8 R=0 S=0", map="m"),
    row("shmget(9p) > pool", "shmget", "T=8 F=8 R=0 S=0", result="ENOMEM", shm="big", size=9),
    row("shmget(3p+4k) size rounding -> id=1 (as 4 pages)", "shmget", "T=8 F=8 R=4 S=0",
        shm="r", size=4),
    row("IPC_RMID (never attached)", "shmrm", "T=8 F=8 R=0 S=0", shm="r"),
    row("shmget(3p, SHM_HUGETLB|SHM_NORESERVE) -> id=2", "shmget", "T=8 F=8 R=0 S=0", shm="n",
        size=3, noreserve=True),
    row("shmat + write p0 [shmat]", "mmap", map="n", shm="n"),
    row("shmat + write p0", "touch", "T=8 F=7 R=0 S=0", map="n", page=0),
    row("shmdt + IPC_RMID [shmdt]", "munmap", map="n"),
    row("shmdt + IPC_RMID", "shmrm", "T=8 F=8 R=0 S=0", shm="n"),
))

# live-kernel.md §3.3 P03c: MAP_NORESERVE.  The file is given 16 pages so that every fault
# below is inside it (the probe's file size is not shown; p9 is the highest page touched).
# "other mapping reserves 7p" is replayed as a 7-page private anonymous mapping.
P03C = Seq("live-kernel.md §3.3 P03c", pool=8, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("16p file (setup)", "create", "T=8 F=8 R=0 S=0", file="hp/f", size=16),
    row("mmap(16p SHARED|NORESERVE) > pool -> ok", "mmap", "T=8 F=8 R=0 S=0", map="nr",
        file="hp/f", length=16, noreserve=True),
    row("write fault p0", "touch", "T=8 F=7 R=0 S=0", map="nr", page=0),
    row("mmap(2p SHARED, off 2p) normal reserve", "mmap", "T=8 F=7 R=2 S=0", map="rs",
        file="hp/f", offset=2, length=2),
    row("POPULATE_WRITE p1..p7 via NORESERVE map", "touch", "T=8 F=0 R=0 S=0", map="nr",
        page=1, count=7),
    row("POPULATE_WRITE p8 (pool empty) -> EFAULT", "touch", "T=8 F=0 R=0 S=0",
        result="SIGBUS", map="nr", page=8),
    child_touch("write fault p9 in child (pool empty) -> signal:SIGBUS", "nr", 9,
                "T=8 F=0 R=0 S=0", "SIGBUS"),
    row("munmap both [nr]", "munmap", map="nr"),
    row("munmap both (pages stay in file)", "munmap", "T=8 F=0 R=0 S=0", map="rs"),
    row("ftruncate(0)", "truncate", "T=8 F=8 R=0 S=0", file="hp/f", size=0),
    row("mmap(4p anon PRIVATE|NORESERVE)", "mmap", "T=8 F=8 R=0 S=0", map="a", anon=True,
        length=4, shared=False, noreserve=True),
    row("write p0", "touch", "T=8 F=7 R=0 S=0", map="a", page=0),
    row("MADV_DONTNEED p0", "madvise", "T=8 F=8 R=0 S=0", map="a", page=0, advice="dontneed"),
    row("munmap", "munmap", "T=8 F=8 R=0 S=0", map="a"),
    row("other mapping reserves 7p", "mmap", "T=8 F=8 R=7 S=0", map="other", anon=True,
        length=7, shared=False),
    row("mmap(4p anon PRIVATE|NORESERVE)", "mmap", "T=8 F=8 R=7 S=0", map="a", anon=True,
        length=4, shared=False, noreserve=True),
    row("POPULATE_WRITE p0 (1 unreserved free)", "touch", "T=8 F=7 R=7 S=0", map="a", page=0),
    row("POPULATE_WRITE p1 (free pages all reserved) -> EFAULT", "touch", "T=8 F=7 R=7 S=0",
        result="SIGBUS", map="a", page=1),
    child_touch("child write p1 (free pages all reserved) -> signal:SIGBUS", "a", 1,
                "T=8 F=7 R=7 S=0", "SIGBUS"),
    row("munmap all [a]", "munmap", map="a"),
    row("munmap all", "munmap", "T=8 F=8 R=0 S=0", map="other"),
))

SEQUENCES = [P03A, P03B, P03C]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.rsplit(" ", 1)[-1])
def test_measured_sequence(seq: Seq) -> None:
    replay(seq)
