"""Faulting without dying and the pitfalls: live-kernel.md §5 (P08a, P08b) and §7 (P10a,
P10b, P10e), the parts format 1 can express.

Not in the required list of sequences, but they measure st_blocks (P10a, P10b) and partial
population, so they are replayed too.  MADV_POPULATE_* / a probe child's touch is `touch`;
EFAULT and SIGBUS are the result ``SIGBUS``.
"""

from __future__ import annotations

import pytest
from helpers import Seq, child_touch, look, replay, row, rows

# live-kernel.md §5 P08a: MADV_POPULATE_* error codes (pool 4).
# Skipped rows: "/proc/self/mem pwrite p4" / "pread p4" (EIO), "mlock p4..p5" (ENOMEM),
# "POPULATE_WRITE unaligned 4k inside p0", "addr not 4k-aligned" (EINVAL), "len=0",
# "unmapped range" (ENOMEM; a format 1 touch of an unmapped page is SIGSEGV instead) and
# "madvise(advice=99)": none is a format 1 operation or argument.  The file has 16 pages (the
# probe's size is not shown).
P08A = Seq("live-kernel.md §5 P08a", pool=4, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("a 16p file (setup)", "create", file="hp/f", size=16),
    row("mmap(16p SHARED|NORESERVE), pool=4", "mmap", "T=4 F=4 R=0 S=0", map="m", file="hp/f",
        length=16, noreserve=True),
    row("POPULATE_WRITE 6p (only 4 exist) -> EFAULT", "touch", "T=4 F=0 R=0 S=0",
        result="SIGBUS", map="m", page=0, count=6),
    row("POPULATE_WRITE again on p0..p3 (already present) -> 0", "touch", "T=4 F=0 R=0 S=0",
        map="m", page=0, count=4),
    row("POPULATE_READ p4 (none free) -> EFAULT", "touch", "T=4 F=0 R=0 S=0", result="SIGBUS",
        map="m", page=4, write=False),
    row("munmap + ftruncate(0) [munmap]", "munmap", map="m"),
    row("munmap + ftruncate(0)", "truncate", "T=4 F=4 R=0 S=0", file="hp/f", size=0),
))

# live-kernel.md §5 P08b: protections, EOF, MAP_POPULATE, mlock (pool 4).
# "POPULATE_WRITE on PROT_READ -> EINVAL": in format 1 a write to a read-only mapping is
# SIGSEGV (the kernel's madvise answers EINVAL, a real write would SIGSEGV); the counters are
# the point.  Skipped: "/proc/self/mem pwrite" rows, the HugetlbPages/smaps lines,
# "POPULATE_READ on PROT_NONE anon" and its cleanup (no PROT_NONE in format 1).  mlock
# populates like MADV_POPULATE, so "mlock 2p" and "mlock NORESERVE 3p" are touches.  Mappings
# the probe dropped without a row of their own (the counters show they were gone) are unmapped
# in steps marked "(the probe unmaps ...)".
P08B = Seq("live-kernel.md §5 P08b", pool=4, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("a 2p file (setup)", "create", file="hp/f", size=2),
    row("mmap(4p PROT_READ SHARED) of 2p file -> R shown", "mmap", "T=4 F=4 R=4 S=0", map="r",
        file="hp/f", length=4, writable=False),
    row("POPULATE_WRITE on PROT_READ -> EINVAL (SIGSEGV in format 1)", "touch",
        "T=4 F=4 R=4 S=0", result="SIGSEGV", map="r", page=0),
    row("POPULATE_READ on PROT_READ p0 -> 0", "touch", "T=4 F=3 R=3 S=0", map="r", page=0,
        write=False),
    row("POPULATE_READ p2 beyond EOF -> EFAULT", "touch", "T=4 F=3 R=3 S=0", result="SIGBUS",
        map="r", page=2, write=False),
    child_touch("child read p2 beyond EOF -> signal:SIGBUS", "r", 2, "T=4 F=3 R=3 S=0",
                "SIGBUS", write=False),
    row("munmap (4p reserved incl. 2 beyond EOF stay)", "munmap", "T=4 F=3 R=3 S=0 size[hp/f]=2",
        map="r"),
    row("ftruncate(0)", "truncate", "T=4 F=4 R=0 S=0", file="hp/f", size=0),
    row("anon private 2p", "mmap", "T=4 F=4 R=2 S=0", map="p", anon=True, length=2,
        shared=False),
    row("mlock 2p -> 0", "touch", "T=4 F=2 R=0 S=0", map="p", page=0, count=2),
    row("(the probe unmaps the private 2p)", "munmap", "T=4 F=4 R=0 S=0", map="p"),
    row("anon shared 2p [mmap]", "mmap", map="s", anon=True, length=2),
    row("anon shared 2p; /proc/self/mem pwrite p0 -> 1", "touch", "T=4 F=3 R=1 S=0", map="s",
        page=0),
    row("munmap", "munmap", "T=4 F=4 R=0 S=0", map="s"),
    row("anon NORESERVE 3p [mmap]", "mmap", map="nr", anon=True, length=3, shared=False,
        noreserve=True),
    row("anon NORESERVE 3p + reserved 2p (2 unreserved free)", "mmap", "T=4 F=4 R=2 S=0",
        map="rs", anon=True, length=2, shared=False),
    row("mlock NORESERVE 3p -> ENOMEM (partial)", "touch", "T=4 F=2 R=2 S=0", result="SIGBUS",
        map="nr", page=0, count=3),
    row("same again; POPULATE_WRITE 3p -> EFAULT", "touch", "T=4 F=2 R=2 S=0", result="SIGBUS",
        map="nr", page=0, count=3),
    row("(the probe unmaps both) [nr]", "munmap", map="nr"),
    row("(the probe unmaps both)", "munmap", "T=4 F=4 R=0 S=0", map="rs"),
    row("mmap(6p NORESERVE|MAP_POPULATE), pool=4 -> ok (no error)", "mmap", "T=4 F=0 R=0 S=0",
        map="pop", anon=True, length=6, shared=False, noreserve=True, populate=True),
    row("munmap", "munmap", "T=4 F=4 R=0 S=0", map="pop"),
))

# live-kernel.md §7 P10a: leftovers of a SIGKILLed test process (pool 12, cgroup K).
# The child (in K) creates everything; its SIGKILL is `exit` plus closing the two handles the
# scenario holds for it (in format 1 the scenario, not the process, holds memfd and file
# handles).  Skipped: the /proc/sysvipc/shm line (not a counter of format 1).
P10A = Seq("live-kernel.md §7 P10a", pool=12, rows=rows(
    row("cgroup K (setup)", "cgroup", name="K"),
    row("mount (setup)", "mount", name="hp"),
    row("the child in K (setup)", "spawn", "T=12 F=12 R=0 S=0 K.u=0 K.r=0", proc="kid",
        cgroup="K"),
    row("child: file 4p [create]", "create", proc="kid", file="hp/f", size=4),
    row("child: file 4p [mmap]", "mmap", proc="kid", map="f", file="hp/f", length=4),
    row("child: file 4p (2 faulted)", "touch", proc="kid", map="f", page=0, count=2),
    row("child: anon priv 2p [mmap]", "mmap", proc="kid", map="a", anon=True, length=2,
        shared=False),
    row("child: anon priv 2p (1)", "touch", proc="kid", map="a", page=0),
    row("child: memfd 1p [memfd]", "memfd", proc="kid", file="memfd:m", size=1),
    row("child: memfd 1p [mmap]", "mmap", proc="kid", map="m", file="memfd:m", length=1),
    row("child: memfd 1p (1)", "touch", proc="kid", map="m", page=0),
    row("child: shm 2p [shmget]", "shmget", proc="kid", shm="s", size=2),
    row("child: shm 2p [shmat]", "mmap", proc="kid", map="s", shm="s"),
    row("child: file 4p(2 faulted) + anon priv 2p(1) + memfd 1p(1) + shm 2p(1)", "touch",
        "T=12 F=7 R=4 S=0 K.u=5 K.r=9", proc="kid", map="s", page=0),
    row("after SIGKILL of the child [exit]", "exit", proc="kid"),
    row("after SIGKILL of the child [its memfd]", "close", file="memfd:m"),
    row("after SIGKILL of the child", "close", "T=12 F=9 R=3 S=0 K.u=3 K.r=6", file="hp/f"),
    look("stale file stat -> size=4p st_blocks=8192 (= 2p)",
         "T=12 F=9 R=3 S=0 K.u=3 K.r=6 size[hp/f]=4 blocks[hp/f]=2"),
    row("rmdir K (task dead, charges remain) -> 0", "rmdir", "T=12 F=9 R=3 S=0", cgroup="K"),
    row("IPC_RMID the orphaned segment", "shmrm", "T=12 F=10 R=2 S=0", shm="s"),
    row("unlink stale file", "unlink", "T=12 F=12 R=0 S=0", file="hp/f"),
))

# live-kernel.md §7 P10b: st_blocks tracks allocated huge pages per hugetlbfs file (pool 12).
P10B = Seq("live-kernel.md §7 P10b", pool=12, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("a 4p file (setup)", "create", file="hp/f", size=4),
    row("mmap 4p -> st_blocks=0 (0p)", "mmap", "T=12 F=12 R=4 S=0 blocks[hp/f]=0", map="m",
        file="hp/f", length=4),
    row("populate 2p -> st_blocks=8192 (2p)", "touch", "T=12 F=10 R=2 S=0 blocks[hp/f]=2",
        map="m", page=0, count=2),
    row("punch p0 -> st_blocks=4096 (1p)", "punch", "T=12 F=11 R=2 S=0 blocks[hp/f]=1",
        file="hp/f", offset=0, length=1),
))

# live-kernel.md §7 P10e: SysV shm counters (the 'rss' column itself is not a format 1
# counter and is skipped; the pool counters of each row are checked).  Pool 12.
P10E = Seq("live-kernel.md §7 P10e", pool=12, rows=rows(
    row("shmget 3p [shmget]", "shmget", shm="s", size=3),
    row("0 pages faulted", "mmap", "T=12 F=12 R=3 S=0", map="s", shm="s"),
    row("1 pages faulted", "touch", "T=12 F=11 R=2 S=0", map="s", page=0),
    row("2 pages faulted", "touch", "T=12 F=10 R=1 S=0", map="s", page=1),
    row("3 pages faulted", "touch", "T=12 F=9 R=0 S=0", map="s", page=2),
    row("shmdt + IPC_RMID [shmdt]", "munmap", map="s"),
    row("shmdt + IPC_RMID", "shmrm", "T=12 F=12 R=0 S=0", shm="s"),
))

SEQUENCES = [P08A, P08B, P10A, P10B, P10E]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.rsplit(" ", 1)[-1])
def test_measured_sequence(seq: Seq) -> None:
    replay(seq)
