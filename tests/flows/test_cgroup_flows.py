"""hugetlb cgroup v1 charges and limits: live-kernel.md §4.1 (P06a-P06f), §4.2 (P07a-P07c)
and §4.3 P12a (truncate while mapped).

Expectations are the measured lines: ``X.u`` / ``X.r`` are usage_in_bytes / rsvd.usage_in_bytes
of cgroup X in pages, ``rt`` is the scenario's own root cgroup.  "[A]" means the probe (the
scenario's ``init``) acts from cgroup A: it is attached there first.
Covers kernel-semantics.md §9.2, every row: "shared mmap (reserving)" and "fault on reserved
shared index" (P06a), "fault on unreserved shared index (NORESERVE/hole)" (P06a fallocate,
P06d NORESERVE, P12a refault after truncate), "truncate/evict" (P06a, P12a), "private mmap",
"owner fault consuming reservation", "owner VMA close" (P06b), "owner COW of its anon page /
child fault / NORESERVE private fault" (P06c, P06d, P11f in test_private_fork.py); §9.4
cgroup removal (P06f); trace T9 (limits, replayed in test_traces.py; P07a/P07b measure it).
"""

from __future__ import annotations

import pytest
from helpers import Row, Seq, child_touch, look, new_system, replay, row, rows, run_rows

ZERO = "rt.u=0 rt.r=0 A.u=0 A.r=0 B.u=0 B.r=0"


def _ab(*extra: str) -> tuple[Row, ...]:
    """Setup of P06: cgroups A and B, a mount, a 4-page file (pool 16)."""
    return rows(
        row("cgroup A (setup)", "cgroup", name="A"),
        row("cgroup B (setup)", "cgroup", name="B"),
        row("mount (setup)", "mount", name="hp"),
        row("a 4p file (setup)", "create", f"T=16 F=16 R=0 S=0 {ZERO}", file="hp/f", size=4),
        *(row(f"[{cg}] the probe moves to {cg}", "attach", proc="init", cgroup=cg)
          for cg in extra),
    )


# live-kernel.md §4.1 P06a: shared file mapping (pool 16).  B's 4-page mapping is not
# unmapped by any row, yet the last "munmap -> inode evicted" evicts the inode: the probe
# unmapped it before mapping 2p again (replayed there; shared counters do not depend on it).
P06A = Seq("live-kernel.md §4.1 P06a", pool=16, rows=rows(
    _ab("A"),
    row("[A] mmap(4p SHARED)", "mmap",
        "T=16 F=16 R=4 S=0 rt.u=0 rt.r=4 A.u=0 A.r=4 B.u=0 B.r=0", map="m", file="hp/f",
        length=4),
    row("[A] write p0", "touch", "T=16 F=15 R=3 S=0 rt.u=1 rt.r=4 A.u=1 A.r=4 B.u=0 B.r=0",
        map="m", page=0),
    row("[A] read p1", "touch", "T=16 F=14 R=2 S=0 rt.u=2 rt.r=4 A.u=2 A.r=4 B.u=0 B.r=0",
        map="m", page=1, write=False),
    row("[A] POPULATE_WRITE p2", "touch",
        "T=16 F=13 R=1 S=0 rt.u=3 rt.r=4 A.u=3 A.r=4 B.u=0 B.r=0", map="m", page=2),
    row("[A] munmap", "munmap", "T=16 F=13 R=1 S=0 rt.u=3 rt.r=4 A.u=3 A.r=4 B.u=0 B.r=0",
        map="m"),
    row("[B] (the probe moves to B)", "attach", proc="init", cgroup="B"),
    row("[B] mmap same 4p again", "mmap",
        "T=16 F=13 R=1 S=0 rt.u=3 rt.r=4 A.u=3 A.r=4 B.u=0 B.r=0", map="m", file="hp/f",
        length=4),
    row("[B] write p3 (reservation made by A)", "touch",
        "T=16 F=12 R=0 S=0 rt.u=4 rt.r=4 A.u=3 A.r=4 B.u=1 B.r=0", map="m", page=3),
    row("[B] fallocate(0, p4..p5) (no reservation)", "fallocate",
        "T=16 F=10 R=0 S=0 rt.u=6 rt.r=6 A.u=3 A.r=4 B.u=3 B.r=2", file="hp/f", offset=4,
        length=2),
    row("[B] punch p0 (faulted by A)", "punch",
        "T=16 F=11 R=0 S=0 rt.u=5 rt.r=5 A.u=2 A.r=3 B.u=3 B.r=2", file="hp/f", offset=0,
        length=1),
    row("[B] punch p4 (fallocated by B)", "punch",
        "T=16 F=12 R=0 S=0 rt.u=4 rt.r=4 A.u=2 A.r=3 B.u=2 B.r=1", file="hp/f", offset=4,
        length=1),
    row("[B] ftruncate(2p)", "truncate",
        "T=16 F=15 R=0 S=0 rt.u=1 rt.r=1 A.u=1 A.r=1 B.u=0 B.r=0", file="hp/f", size=2),
    row("[B] munmap the 4p map (before mapping 2p again)", "munmap", map="m"),
    row("[B] mmap 2p (p0 punched -> new reservation)", "mmap",
        "T=16 F=15 R=1 S=0 rt.u=1 rt.r=2 A.u=1 A.r=1 B.u=0 B.r=1", map="m2", file="hp/f",
        length=2),
    row("[B] unlink+close while mapped [unlink]", "unlink", file="hp/f"),
    row("[B] unlink+close while mapped", "close",
        "T=16 F=15 R=1 S=0 rt.u=1 rt.r=2 A.u=1 A.r=1 B.u=0 B.r=1", file="hp/f"),
    row("[B] munmap -> inode evicted", "munmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="m2"),
))

# live-kernel.md §4.1 P06b: private file mapping / anon private / anon shared (pool 16).
P06B = Seq("live-kernel.md §4.1 P06b", pool=16, rows=rows(
    _ab("A"),
    row("[A] mmap(4p PRIVATE file)", "mmap",
        "T=16 F=16 R=4 S=0 rt.u=0 rt.r=4 A.u=0 A.r=4 B.u=0 B.r=0", map="p", file="hp/f",
        length=4, shared=False),
    row("[A] read p0", "touch", "T=16 F=15 R=3 S=0 rt.u=1 rt.r=4 A.u=1 A.r=4 B.u=0 B.r=0",
        map="p", page=0, write=False),
    row("[A] write p1", "touch", "T=16 F=14 R=2 S=0 rt.u=2 rt.r=4 A.u=2 A.r=4 B.u=0 B.r=0",
        map="p", page=1),
    row("[A] MADV_DONTNEED p1", "madvise",
        "T=16 F=15 R=3 S=0 rt.u=1 rt.r=4 A.u=1 A.r=4 B.u=0 B.r=0", map="p", page=1,
        advice="dontneed"),
    row("[B] (the probe moves to B)", "attach", proc="init", cgroup="B"),
    row("[B] write p1 again (same mapping, task now in B)", "touch",
        "T=16 F=14 R=2 S=0 rt.u=2 rt.r=4 A.u=1 A.r=4 B.u=1 B.r=0", map="p", page=1),
    row("[B] munmap p3 (unfaulted)", "munmap",
        "T=16 F=14 R=1 S=0 rt.u=2 rt.r=3 A.u=1 A.r=3 B.u=1 B.r=0", map="p", offset=3,
        length=1),
    row("[B] munmap rest", "munmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="p"),
    row("[A] (the probe moves to A)", "attach", proc="init", cgroup="A"),
    row("[A] mmap(3p anon PRIVATE)", "mmap",
        "T=16 F=16 R=3 S=0 rt.u=0 rt.r=3 A.u=0 A.r=3 B.u=0 B.r=0", map="a", anon=True,
        length=3, shared=False),
    row("[A] write p0,p1", "touch", "T=16 F=14 R=1 S=0 rt.u=2 rt.r=3 A.u=2 A.r=3 B.u=0 B.r=0",
        map="a", page=0, count=2),
    row("[A] munmap", "munmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="a"),
    row("[A] mmap(3p anon SHARED)", "mmap",
        "T=16 F=16 R=3 S=0 rt.u=0 rt.r=3 A.u=0 A.r=3 B.u=0 B.r=0", map="s", anon=True,
        length=3),
    row("[A] write p0,p1", "touch", "T=16 F=14 R=1 S=0 rt.u=2 rt.r=3 A.u=2 A.r=3 B.u=0 B.r=0",
        map="s", page=0, count=2),
    row("[A] munmap", "munmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="s"),
))

# live-kernel.md §4.1 P06c: fork + COW across cgroups (pool 16).
P06C = Seq("live-kernel.md §4.1 P06c", pool=16, rows=rows(
    _ab("A"),
    row("[A] parent mmap 2p private [mmap]", "mmap", map="a", anon=True, length=2,
        shared=False),
    row("[A] parent mmap 2p private + write both", "touch",
        "T=16 F=14 R=0 S=0 rt.u=2 rt.r=2 A.u=2 A.r=2 B.u=0 B.r=0", map="a", page=0, count=2),
    row("fork (child in A)", "fork", "T=16 F=14 R=0 S=0 rt.u=2 rt.r=2 A.u=2 A.r=2 B.u=0 B.r=0",
        child="kid"),
    row("move child pid to B", "attach",
        "T=16 F=14 R=0 S=0 rt.u=2 rt.r=2 A.u=2 A.r=2 B.u=0 B.r=0", proc="kid", cgroup="B"),
    row("[child in B] COW write p0", "touch",
        "T=16 F=13 R=0 S=0 rt.u=3 rt.r=3 A.u=2 A.r=2 B.u=1 B.r=1", proc="kid", map="a",
        page=0),
    row("[A] parent COW write p1", "touch",
        "T=16 F=12 R=0 S=0 rt.u=4 rt.r=4 A.u=3 A.r=3 B.u=1 B.r=1", map="a", page=1),
    row("child exit", "exit", "T=16 F=14 R=0 S=0 rt.u=2 rt.r=3 A.u=2 A.r=3 B.u=0 B.r=0",
        proc="kid"),
    row("[A] parent munmap", "munmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="a"),
))

# live-kernel.md §4.1 P06d: MAP_NORESERVE / memfd / SysV shm (pool 16).
P06D = Seq("live-kernel.md §4.1 P06d", pool=16, rows=rows(
    _ab("A"),
    row("[A] mmap(4p SHARED|NORESERVE)", "mmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="m",
        file="hp/f", length=4, noreserve=True),
    row("[A] write p0", "touch", "T=16 F=15 R=0 S=0 rt.u=1 rt.r=1 A.u=1 A.r=1 B.u=0 B.r=0",
        map="m", page=0),
    row("[A] munmap (page stays in file)", "munmap",
        "T=16 F=15 R=0 S=0 rt.u=1 rt.r=1 A.u=1 A.r=1 B.u=0 B.r=0", map="m"),
    row("[A] ftruncate(0)", "truncate", f"T=16 F=16 R=0 S=0 {ZERO}", file="hp/f", size=0),
    row("[A] mmap(4p anon PRIVATE|NORESERVE)", "mmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="a",
        anon=True, length=4, shared=False, noreserve=True),
    row("[A] write p0", "touch", "T=16 F=15 R=0 S=0 rt.u=1 rt.r=1 A.u=1 A.r=1 B.u=0 B.r=0",
        map="a", page=0),
    row("[A] munmap", "munmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="a"),
    row("[A] memfd 3p [memfd]", "memfd", file="memfd:x", size=3),
    row("[A] memfd 3p + mmap SHARED", "mmap",
        "T=16 F=16 R=3 S=0 rt.u=0 rt.r=3 A.u=0 A.r=3 B.u=0 B.r=0", map="x", file="memfd:x",
        length=3),
    row("[A] write p0", "touch", "T=16 F=15 R=2 S=0 rt.u=1 rt.r=3 A.u=1 A.r=3 B.u=0 B.r=0",
        map="x", page=0),
    row("[A] munmap + close [munmap]", "munmap", map="x"),
    row("[A] munmap + close", "close", f"T=16 F=16 R=0 S=0 {ZERO}", file="memfd:x"),
    row("[A] shmget(3p SHM_HUGETLB) -> ok", "shmget",
        "T=16 F=16 R=3 S=0 rt.u=0 rt.r=3 A.u=0 A.r=3 B.u=0 B.r=0", shm="s", size=3),
    row("[B] (the probe moves to B)", "attach", proc="init", cgroup="B"),
    row("[B] shmat + write p0 [shmat]", "mmap", map="s", shm="s"),
    row("[B] shmat + write p0", "touch",
        "T=16 F=15 R=2 S=0 rt.u=1 rt.r=3 A.u=0 A.r=3 B.u=1 B.r=0", map="s", page=0),
    row("[B] shmdt + IPC_RMID [shmdt]", "munmap", map="s"),
    row("[B] shmdt + IPC_RMID", "shmrm", f"T=16 F=16 R=0 S=0 {ZERO}", shm="s"),
))

# live-kernel.md §4.1 P06e: moving a task with charges between cgroups (pool 16).
# "private 2p" is a private anonymous mapping (the probe's kind of private mapping is not
# shown; a private file mapping gives the same counters).
P06E = Seq("live-kernel.md §4.1 P06e", pool=16, rows=rows(
    _ab("A"),
    row("[A] shared 4p [mmap]", "mmap", map="s", file="hp/f", length=4),
    row("[A] shared 4p (2 faulted) [touch]", "touch", map="s", page=0, count=2),
    row("[A] private 2p [mmap]", "mmap", map="p", anon=True, length=2, shared=False),
    row("[A] shared 4p (2 faulted) + private 2p (1 faulted)", "touch",
        "T=16 F=13 R=3 S=0 rt.u=3 rt.r=6 A.u=3 A.r=6 B.u=0 B.r=0", map="p", page=0),
    row("move self A -> B", "attach", "T=16 F=13 R=3 S=0 rt.u=3 rt.r=6 A.u=3 A.r=6 B.u=0 B.r=0",
        proc="init", cgroup="B"),
    row("[B] write shared p2 [touch]", "touch", map="s", page=2),
    row("[B] write shared p2 + private p1", "touch",
        "T=16 F=11 R=1 S=0 rt.u=5 rt.r=6 A.u=3 A.r=6 B.u=2 B.r=0", map="p", page=1),
    row("[B] munmap private", "munmap",
        "T=16 F=13 R=1 S=0 rt.u=3 rt.r=4 A.u=2 A.r=4 B.u=1 B.r=0", map="p"),
    row("[B] munmap shared", "munmap",
        "T=16 F=13 R=1 S=0 rt.u=3 rt.r=4 A.u=2 A.r=4 B.u=1 B.r=0", map="s"),
    row("[B] ftruncate(0)", "truncate", f"T=16 F=16 R=0 S=0 {ZERO}", file="hp/f", size=0),
))

# live-kernel.md §4.1 P06f: rmdir of a child cgroup that still holds charges (pool 16).
# Skipped: the "A numa_stat" line (numa_stat is not a format 1 counter).  "rmdir C (child of
# root) with charges -> 0" needs C to have no task, so the probe left C first (not a row of
# its own): replayed as an attach to root before the rmdir.  The final line "A.max_usage 4
# A.rsvd.max_usage 6 A.failcnt 0" is checked at the end.
P06F = Seq("live-kernel.md §4.1 P06f", pool=16, rows=rows(
    _ab(),
    row("mkdir A/sub", "cgroup",
        f"T=16 F=16 R=0 S=0 {ZERO} A/sub.u=0 A/sub.r=0", name="A/sub"),
    row("[sub] (the probe moves to A/sub)", "attach", proc="init", cgroup="A/sub"),
    row("[sub] shared 4p [mmap]", "mmap", map="s", file="hp/f", length=4),
    row("[sub] shared 4p (2 faulted) [touch]", "touch", map="s", page=0, count=2),
    row("[sub] private 2p [mmap]", "mmap", map="p", anon=True, length=2, shared=False),
    row("[sub] shared 4p (2 faulted) + private 2p (1 faulted)", "touch",
        "T=16 F=13 R=3 S=0 rt.u=3 rt.r=6 A.u=3 A.r=6 B.u=0 B.r=0 A/sub.u=3 A/sub.r=6",
        map="p", page=0),
    row("rmdir A/sub while self inside", "rmdir",
        "T=16 F=13 R=3 S=0 rt.u=3 rt.r=6 A.u=3 A.r=6 B.u=0 B.r=0 A/sub.u=3 A/sub.r=6",
        result="EBUSY", cgroup="A/sub"),
    row("rmdir A/sub after moving self to A [attach]", "attach", proc="init", cgroup="A"),
    row("rmdir A/sub after moving self to A", "rmdir",
        "T=16 F=13 R=3 S=0 rt.u=3 rt.r=6 A.u=3 A.r=6 B.u=0 B.r=0", cgroup="A/sub"),
    row("[A] write shared p2", "touch",
        "T=16 F=12 R=2 S=0 rt.u=4 rt.r=6 A.u=4 A.r=6 B.u=0 B.r=0", map="s", page=2),
    row("[A] munmap private (charged to removed sub)", "munmap",
        "T=16 F=13 R=1 S=0 rt.u=3 rt.r=4 A.u=3 A.r=4 B.u=0 B.r=0", map="p"),
    row("[A] munmap shared", "munmap",
        "T=16 F=13 R=1 S=0 rt.u=3 rt.r=4 A.u=3 A.r=4 B.u=0 B.r=0", map="s"),
    row("[A] ftruncate(0)", "truncate", f"T=16 F=16 R=0 S=0 {ZERO}", file="hp/f", size=0),
    row("[C] mkdir C", "cgroup", name="C"),
    row("[C] (the probe moves to C)", "attach", proc="init", cgroup="C"),
    row("[C] anon shared 2p [mmap]", "mmap", map="c", anon=True, length=2),
    row("[C] anon shared 2p, write p0", "touch",
        "T=16 F=15 R=1 S=0 rt.u=1 rt.r=2 A.u=0 A.r=0 B.u=0 B.r=0 C.u=1 C.r=2", map="c",
        page=0),
    row("(the probe leaves C for root)", "attach", proc="init", cgroup="root"),
    row("rmdir C (child of root) with charges", "rmdir",
        "T=16 F=15 R=1 S=0 rt.u=1 rt.r=2 A.u=0 A.r=0 B.u=0 B.r=0", cgroup="C"),
    row("[root] munmap", "munmap", f"T=16 F=16 R=0 S=0 {ZERO}", map="c"),
    look("A.max_usage 4 A.rsvd.max_usage 6 A.failcnt 0",
         "A.max_usage=4 A.rsvd_max_usage=6 A.failcnt=0"),
))

# live-kernel.md §4.2 P07a: rsvd.limit_in_bytes = 2 pages (pool 16, cgroup L).
# Skipped rows: "reset rsvd.failcnt (write 0)", "reset rsvd.max_usage (write 0)" and the
# "counters" line after them (writes to failcnt / max_usage files are not format 1
# operations), and "set rsvd.limit=3M (non-multiple)" with its read back (not whole pages).
# "read back -> 9223372036852678656" after "set rsvd.limit=-1" is the unlimited value: null.
P07A = Seq("live-kernel.md §4.2 P07a", pool=16, rows=rows(
    row("cgroup L (setup)", "cgroup", name="L"),
    row("the probe joins L (setup)", "attach", "T=16 F=16 R=0 S=0 L.u=0 L.r=0", proc="init",
        cgroup="L"),
    row("mount (setup)", "mount", name="hp"),
    row("an 8p file (setup)", "create", file="hp/f", size=8),
    row("set rsvd.limit=2p -> ok", "cgroup", "T=16 F=16 R=0 S=0 L.u=0 L.r=0", name="L",
        rsvd_limit=2),
    look("read back rsvd.limit_in_bytes -> 4194304", "L.rsvd_limit=2"),
    row("mmap(3p SHARED file)", "mmap", "T=16 F=16 R=0 S=0 L.u=0 L.r=0", result="ENOMEM",
        map="x", file="hp/f", length=3),
    look("counters -> failcnt=0 rsvd.failcnt=1 max=0 rsvd.max=0",
         "L.failcnt=0 L.rsvd_failcnt=1 L.max_usage=0 L.rsvd_max_usage=0"),
    row("mmap(2p SHARED file) -> ok", "mmap", "T=16 F=16 R=2 S=0 L.u=0 L.r=2", map="m",
        file="hp/f", length=2),
    row("mmap(1p anon PRIVATE)", "mmap", "T=16 F=16 R=2 S=0 L.u=0 L.r=2", result="ENOMEM",
        map="ap", anon=True, length=1, shared=False),
    row("mmap(1p anon SHARED)", "mmap", "T=16 F=16 R=2 S=0 L.u=0 L.r=2", result="ENOMEM",
        map="as", anon=True, length=1),
    row("shmget(1p SHM_HUGETLB)", "shmget", "T=16 F=16 R=2 S=0 L.u=0 L.r=2", result="ENOMEM",
        shm="s", size=1),
    row("fallocate(0, p4) (no reservation)", "fallocate", "T=16 F=16 R=2 S=0 L.u=0 L.r=2",
        result="ENOSPC", file="hp/f", offset=4, length=1),
    row("mmap(8p SHARED|NORESERVE) -> ok", "mmap", "T=16 F=16 R=2 S=0 L.u=0 L.r=2", map="nr",
        file="hp/f", length=8, noreserve=True),
    row("POPULATE_WRITE p5 via NORESERVE -> EFAULT", "touch", "T=16 F=16 R=2 S=0 L.u=0 L.r=2",
        result="SIGBUS", map="nr", page=5),
    child_touch("child write p5 via NORESERVE -> signal:SIGBUS", "nr", 5,
                "T=16 F=16 R=2 S=0 L.u=0 L.r=2", "SIGBUS"),
    row("POPULATE_WRITE p0 (reserved)", "touch", "T=16 F=15 R=1 S=0 L.u=1 L.r=2", map="m",
        page=0),
    look("counters -> failcnt=0 rsvd.failcnt=7 max=1 rsvd.max=2",
         "L.failcnt=0 L.rsvd_failcnt=7 L.max_usage=1 L.rsvd_max_usage=2"),
    row("lower rsvd.limit to 1p (< usage 2)", "cgroup", "T=16 F=15 R=1 S=0 L.u=1 L.r=2",
        result="EBUSY", name="L", rsvd_limit=1),
    row("munmap + ftruncate(0) [munmap m]", "munmap", map="m"),
    row("munmap + ftruncate(0) [munmap nr]", "munmap", map="nr"),
    row("munmap + ftruncate(0)", "truncate", "T=16 F=16 R=0 S=0 L.u=0 L.r=0", file="hp/f",
        size=0),
    row("set rsvd.limit=-1 -> ok", "cgroup", "T=16 F=16 R=0 S=0 L.u=0 L.r=0", name="L",
        rsvd_limit="max"),
    look("read back -> 9223372036852678656 (unlimited)", "L.rsvd_limit=max"),
))

# live-kernel.md §4.2 P07b: limit_in_bytes (fault limit) = 2 pages (pool 16, cgroup L).
# "lower limit to 1p" shows R=2 L.r=4 where the row before showed R=4 L.r=6: the probe had
# unmapped the 2p anonymous mapping in between (replayed as its own step).  "[root] write p2
# (task moved out of L) -> exit:0" is a child moved to root that touches p2 and exits.
P07B_ROWS = rows(
    row("cgroup L (setup)", "cgroup", name="L"),
    row("the probe joins L (setup)", "attach", "T=16 F=16 R=0 S=0 L.u=0 L.r=0", proc="init",
        cgroup="L"),
    row("mount (setup)", "mount", name="hp"),
    row("a 4p file (setup)", "create", file="hp/f", size=4),
    row("set limit=2p -> ok", "cgroup", "T=16 F=16 R=0 S=0 L.u=0 L.r=0", name="L", limit=2),
    row("mmap(4p SHARED) (reservation not limited)", "mmap", "T=16 F=16 R=4 S=0 L.u=0 L.r=4",
        map="m", file="hp/f", length=4),
    row("POPULATE_WRITE p0,p1", "touch", "T=16 F=14 R=2 S=0 L.u=2 L.r=4", map="m", page=0,
        count=2),
    row("POPULATE_WRITE p2 (over fault limit, reserved) -> EFAULT", "touch",
        "T=16 F=14 R=2 S=0 L.u=2 L.r=4", result="SIGBUS", map="m", page=2),
    row("POPULATE_READ p2 -> EFAULT", "touch", "T=16 F=14 R=2 S=0 L.u=2 L.r=4",
        result="SIGBUS", map="m", page=2, write=False),
    child_touch("child write p2 -> signal:SIGBUS", "m", 2, "T=16 F=14 R=2 S=0 L.u=2 L.r=4",
                "SIGBUS"),
    child_touch("child read p2 -> signal:SIGBUS", "m", 2, "T=16 F=14 R=2 S=0 L.u=2 L.r=4",
                "SIGBUS", write=False),
    row("fallocate(0, p2)", "fallocate", "T=16 F=14 R=2 S=0 L.u=2 L.r=4", result="ENOSPC",
        file="hp/f", offset=2, length=1),
    look("counters -> failcnt=5 rsvd.failcnt=0 max=2 rsvd.max=4",
         "L.failcnt=5 L.rsvd_failcnt=0 L.max_usage=2 L.rsvd_max_usage=4"),
    row("mmap(2p anon PRIVATE|MAP_POPULATE) over limit -> ok", "mmap",
        "T=16 F=14 R=4 S=0 L.u=2 L.r=6", map="a", anon=True, length=2, shared=False,
        populate=True),
    row("... POPULATE_WRITE on it -> EFAULT", "touch", "T=16 F=14 R=4 S=0 L.u=2 L.r=6",
        result="SIGBUS", map="a", page=0),
    row("(the probe unmaps the 2p anon mapping)", "munmap", "T=16 F=14 R=2 S=0 L.u=2 L.r=4",
        map="a"),
    row("lower limit to 1p (< usage 2)", "cgroup", "T=16 F=14 R=2 S=0 L.u=2 L.r=4",
        result="EBUSY", name="L", limit=1),
    row("[root] write p2 [fork]", "fork", child="kid"),
    row("[root] write p2 [child moved to root]", "attach", proc="kid", cgroup="root"),
    row("[root] write p2 (task moved out of L) -> exit:0", "touch", proc="kid", map="m",
        page=2),
    row("[root] write p2 [child exits]", "exit", "T=16 F=13 R=1 S=0 L.u=2 L.r=4", proc="kid"),
    row("munmap + ftruncate(0) [munmap]", "munmap", map="m"),
    row("munmap + ftruncate(0)", "truncate", "T=16 F=16 R=0 S=0 L.u=0 L.r=0", file="hp/f",
        size=0),
)
P07B = Seq("live-kernel.md §4.2 P07b", pool=16, rows=P07B_ROWS)

# live-kernel.md §4.2 P07c: hierarchical limit, parent L limited, child L/k unlimited.
# The counters lines of L are cumulative over P07b (failcnt=7 = P07b's 5 + the failed
# MAP_POPULATE fault + the failed POPULATE_WRITE; rsvd.max=6 from P07b's 2p anon mapping;
# rsvd.failcnt was reset in P07a and counts P07c's two refusals): the block was measured on the
# same L right after P07b, so it is replayed after P07b's rows on the same system.
P07C = Seq("live-kernel.md §4.2 P07c (after P07b on the same L)", pool=16, rows=rows(
    P07B_ROWS,
    row("cgroup L/k (setup)", "cgroup", name="L/k"),
    row("[L/k] (the probe moves to L/k)", "attach", "T=16 F=16 R=0 S=0 L.u=0 L.r=0",
        proc="init", cgroup="L/k"),
    row("[L/k] L.rsvd.limit=2p L.limit=3p", "cgroup",
        "T=16 F=16 R=0 S=0 L.u=0 L.r=0 L/k.u=0 L/k.r=0", name="L", rsvd_limit=2, limit=3),
    row("[L/k] mmap(3p anon SHARED)", "mmap", "T=16 F=16 R=0 S=0 L.u=0 L.r=0 L/k.u=0 L/k.r=0",
        result="ENOMEM", map="x", anon=True, length=3),
    row("[L/k] NORESERVE mapping [mmap]", "mmap", map="nr", anon=True, length=4, shared=False,
        noreserve=True),
    row("[L/k] POPULATE_WRITE 2p NORESERVE", "touch",
        "T=16 F=14 R=0 S=0 L.u=2 L.r=2 L/k.u=2 L/k.r=2", map="nr", page=0, count=2),
    row("[L/k] POPULATE_WRITE 1p more -> EFAULT", "touch",
        "T=16 F=14 R=0 S=0 L.u=2 L.r=2 L/k.u=2 L/k.r=2", result="SIGBUS", map="nr", page=2),
    look("counters L -> failcnt=7 rsvd.failcnt=2 max=2 rsvd.max=6",
         "L.failcnt=7 L.rsvd_failcnt=2 L.max_usage=2 L.rsvd_max_usage=6"),
    look("counters k -> failcnt=0 rsvd.failcnt=0 max=2 rsvd.max=3",
         "L/k.failcnt=0 L/k.rsvd_failcnt=0 L/k.max_usage=2 L/k.rsvd_max_usage=3"),
    row("munmap", "munmap", "T=16 F=16 R=0 S=0 L.u=0 L.r=0 L/k.u=0 L/k.r=0", map="nr"),
))

# live-kernel.md §4.2 P07d (root limits not settable) is not replayed: a limit on `root` is a
# scenario error in format 1, not a kernel result.

# live-kernel.md §4.3 P12a: truncate while mapped, then grow again (pool 6, cgroup A).
P12A = Seq("live-kernel.md §4.3 P12a", pool=6, rows=rows(
    row("cgroup A (setup)", "cgroup", name="A"),
    row("the probe joins A (setup)", "attach", proc="init", cgroup="A"),
    row("mount (setup)", "mount", name="hp"),
    row("a 4p file (setup)", "create", "T=6 F=6 R=0 S=0 A.u=0 A.r=0", file="hp/f", size=4),
    row("[A] mmap 4p [mmap]", "mmap", map="m", file="hp/f", length=4),
    row("[A] mmap 4p, populate p0,p1", "touch", "T=6 F=4 R=2 S=0 A.u=2 A.r=4", map="m",
        page=0, count=2),
    row("ftruncate(1p) while mapped", "truncate", "T=6 F=5 R=0 S=0 A.u=1 A.r=1", file="hp/f",
        size=1),
    row("POPULATE_WRITE p2 (beyond EOF) -> EFAULT", "touch", "T=6 F=5 R=0 S=0 A.u=1 A.r=1",
        result="SIGBUS", map="m", page=2),
    row("ftruncate(4p) grow while mapped", "truncate", "T=6 F=5 R=0 S=0 A.u=1 A.r=1",
        file="hp/f", size=4),
    row("POPULATE_WRITE p2 (no reservation any more)", "touch", "T=6 F=4 R=0 S=0 A.u=2 A.r=2",
        map="m", page=2),
    row("anon private 3p (leaves 1 unreserved free page) -> ok", "mmap",
        "T=6 F=4 R=3 S=0 A.u=2 A.r=5", map="a", anon=True, length=3, shared=False),
    row("POPULATE_WRITE p3 (no reservation; takes last unreserved page)", "touch",
        "T=6 F=3 R=3 S=0 A.u=3 A.r=6", map="m", page=3),
    row("munmap the anon 3p", "munmap", "T=6 F=3 R=0 S=0 A.u=3 A.r=3", map="a"),
    row("second mmap(2p SHARED, off 2p) (p2,p3 already in page cache) -> ok", "mmap",
        "T=6 F=3 R=0 S=0 A.u=3 A.r=3", map="m2", file="hp/f", offset=2, length=2),
    row("munmap all [m]", "munmap", map="m"),
    row("munmap all", "munmap", "T=6 F=3 R=0 S=0 A.u=3 A.r=3", map="m2"),
    row("ftruncate(0)", "truncate", "T=6 F=6 R=0 S=0 A.u=0 A.r=0", file="hp/f", size=0),
))

SEQUENCES = [P06A, P06B, P06C, P06D, P06E, P06F, P07A, P07B, P07C, P12A]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.split(" ")[2])
def test_measured_sequence(seq: Seq) -> None:
    replay(seq)


def test_p07c_child_watermark_rises_although_parent_refuses() -> None:
    """live-kernel.md §4.2 P07c alone (fresh L): k's rsvd watermark is 3 after the refused
    3-page mmap, although k never held 3 pages and L refused the charge; L's failcnt is
    untouched because the rsvd level refused first."""
    seq = Seq("live-kernel.md §4.2 P07c (fresh L)", pool=16, rows=())
    system = new_system(seq)
    steps = rows(
        row("cgroup L", "cgroup", name="L", rsvd_limit=2, limit=3),
        row("cgroup L/k", "cgroup", name="L/k"),
        row("[L/k]", "attach", proc="init", cgroup="L/k"),
        row("[L/k] mmap(3p anon SHARED)", "mmap",
            "L.u=0 L.r=0 L/k.u=0 L/k.r=0 L/k.rsvd_max_usage=3 L.rsvd_max_usage=0 "
            "L.rsvd_failcnt=1 L/k.rsvd_failcnt=0", result="ENOMEM", map="x", anon=True,
            length=3),
        row("[L/k] NORESERVE mapping", "mmap", map="nr", anon=True, length=4, shared=False,
            noreserve=True),
        row("[L/k] POPULATE_WRITE 2p NORESERVE", "touch", "L.u=2 L.r=2 L/k.u=2 L/k.r=2",
            map="nr", page=0, count=2),
        row("[L/k] POPULATE_WRITE 1p more", "touch",
            "L.failcnt=0 L.rsvd_failcnt=2 L.max_usage=2 L.rsvd_max_usage=2 "
            "L/k.failcnt=0 L/k.rsvd_failcnt=0 L/k.max_usage=2 L/k.rsvd_max_usage=3",
            result="SIGBUS", map="nr", page=2),
    )
    run_rows(system, seq, steps)
