"""Kernel quirks of 6.18.44 the model must reproduce: live-kernel.md §3.7 (P14a-P14d).

These are the items kernel-semantics.md marked UNSURE, measured live: the Rsvd underflow when
the owner unmaps private pages a forked child still maps (P14a, P14b), MADV_DONTNEED not
restoring the reservation while surplus pages exist (P14c, kernel-semantics §11 "restore-on-
unmap" row), and a size= subpool losing a page of capacity per failed fault (P14d,
kernel-semantics §6.2 step 10).  R is written as the kernel printed it (unsigned 64-bit).
"""

from __future__ import annotations

import pytest
from helpers import Seq, look, replay, row, rows

# live-kernel.md §3.7 P14a: owner munmaps a private page still mapped by a forked child
# (pool 4).
P14A = Seq("live-kernel.md §3.7 P14a", pool=4, rows=rows(
    row("parent: 2p private anon [mmap]", "mmap", map="a", anon=True, length=2, shared=False),
    row("parent: 2p private anon, both written", "touch", "T=4 F=2 R=0 S=0", map="a", page=0,
        count=2),
    row("fork (child maps both pages, sleeping)", "fork", "T=4 F=2 R=0 S=0", child="kid"),
    row("parent munmap(2p) -> raw resv_hugepages=18446744073709551614", "munmap",
        "T=4 F=2 R=18446744073709551614 S=0", map="a"),
    row("child exits -> raw resv_hugepages=0", "exit", "T=4 F=4 R=0 S=0", proc="kid"),
))

# live-kernel.md §3.7 P14b: owner MADV_DONTNEEDs a page still mapped by a forked child, then
# re-faults it (pool 4).
P14B = Seq("live-kernel.md §3.7 P14b", pool=4, rows=rows(
    row("parent 2p [mmap]", "mmap", map="a", anon=True, length=2, shared=False),
    row("parent 2p written [touch]", "touch", map="a", page=0, count=2),
    row("parent 2p written; fork (child sleeping)", "fork", "T=4 F=2 R=0 S=0", child="kid"),
    row("parent MADV_DONTNEED p0", "madvise", "T=4 F=2 R=0 S=0", map="a", page=0,
        advice="dontneed"),
    row("parent re-fault p0 (POPULATE_WRITE)", "touch", "T=4 F=1 R=18446744073709551615 S=0",
        map="a", page=0),
    row("child exits -> raw resv_hugepages=0", "exit", "T=4 F=2 R=0 S=0", proc="kid"),
    row("parent munmap -> raw resv_hugepages=0", "munmap", "T=4 F=4 R=0 S=0", map="a"),
))

# live-kernel.md §3.7 P14c: MADV_DONTNEED on a private page while surplus pages exist
# (baseline pool 4).  "NORESERVE populate 3p" is a private anonymous NORESERVE mapping; the
# probe's cleanup (both munmaps) is replayed as two steps, the last one checked.
P14C = Seq("live-kernel.md §3.7 P14c", pool=4, rows=rows(
    row("nr=2 ovc=2", "pool", "T=2 F=2 R=0 S=0", pages=2, overcommit=2),
    row("private 1p [mmap]", "mmap", map="p", anon=True, length=1, shared=False),
    row("private 1p written (persistent page)", "touch", "T=2 F=1 R=0 S=0", map="p", page=0),
    row("NORESERVE 3p [mmap]", "mmap", map="nr", anon=True, length=3, shared=False,
        noreserve=True),
    row("NORESERVE populate 3p (1 persistent + 2 surplus) -> 0", "touch", "T=4 F=0 R=0 S=2",
        map="nr", page=0, count=3),
    row("MADV_DONTNEED private p0 (surplus exists) -> 0", "madvise", "T=3 F=0 R=0 S=1",
        map="p", page=0, advice="dontneed"),
    row("re-fault private p0 -> 0", "touch", "T=4 F=0 R=0 S=2", map="p", page=0),
    row("cleanup [munmap NORESERVE]", "munmap", map="nr"),
    row("cleanup", "munmap", "T=2 F=2 R=0 S=0", map="p"),
))

# live-kernel.md §3.7 P14d: size=8M (4p) subpool on a 2-page pool: failed mmap / failed
# faults.  The NORESERVE mapping covers p0..p4 (5 pages; the probe's length is not shown) of
# an 8-page file.  "pool=8; mmap(4p) (= size) -> ENOMEM" is a pool step then the mmap.  Before
# the umount the mapping and the scenario's handle go.
P14D = Seq("live-kernel.md §3.7 P14d", pool=2, rows=rows(
    row("mount size=8M, pool=2 -> blocks=4 bfree=4", "mount", "T=2 F=2 R=0 S=0 bfree[hp]=4",
        name="hp", size=4),
    row("an 8p file (setup)", "create", "T=2 F=2 R=0 S=0 bfree[hp]=4", file="hp/f", size=8),
    row("mmap(3p) #1: subpool ok, global fails", "mmap", "T=2 F=2 R=0 S=0 bfree[hp]=4",
        result="ENOMEM", map="x1", file="hp/f", length=3),
    row("mmap(3p) #2: subpool ok, global fails", "mmap", "T=2 F=2 R=0 S=0 bfree[hp]=4",
        result="ENOMEM", map="x2", file="hp/f", length=3),
    row("NORESERVE mapping [mmap]", "mmap", "T=2 F=2 R=0 S=0 bfree[hp]=4", map="nr",
        file="hp/f", length=5, noreserve=True),
    row("NORESERVE populate 2p -> 0 blocks=4 bfree=2", "touch", "T=2 F=0 R=0 S=0 bfree[hp]=2",
        map="nr", page=0, count=2),
    row("NORESERVE populate p2 #1 (pool empty) -> EFAULT bfree=1", "touch",
        "T=2 F=0 R=0 S=0 bfree[hp]=1", result="SIGBUS", map="nr", page=2),
    row("NORESERVE populate p3 #2 (pool empty) -> EFAULT bfree=0", "touch",
        "T=2 F=0 R=0 S=0 bfree[hp]=0", result="SIGBUS", map="nr", page=3),
    row("NORESERVE populate p4 #3 (pool empty) -> EFAULT bfree=0", "touch",
        "T=2 F=0 R=0 S=0 bfree[hp]=0", result="SIGBUS", map="nr", page=4),
    row("ftruncate(0) -> 0 blocks=4 bfree=2", "truncate", "T=2 F=2 R=0 S=0 bfree[hp]=2",
        file="hp/f", size=0),
    row("pool=8 [pool]", "pool", pages=8),
    row("pool=8; mmap(4p) (= size) -> ENOMEM blocks=4 bfree=2", "mmap",
        "T=8 F=8 R=0 S=0 bfree[hp]=2", result="ENOMEM", map="y", file="hp/f", length=4),
    row("ftruncate(0) -> 0 blocks=4 bfree=2", "truncate", "T=8 F=8 R=0 S=0 bfree[hp]=2",
        file="hp/f", size=0),
    look("(before umount)", "T=8 F=8 R=0 S=0"),
    row("(munmap before umount)", "munmap", map="nr"),
    row("(close before umount)", "close", file="hp/f"),
    row("umount", "umount", "T=8 F=8 R=0 S=0", name="hp"),
))

SEQUENCES = [P14A, P14B, P14C, P14D]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.rsplit(" ", 1)[-1])
def test_measured_sequence(seq: Seq) -> None:
    replay(seq)
