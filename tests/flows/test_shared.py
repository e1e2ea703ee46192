"""MAP_SHARED hugetlbfs files: live-kernel.md §3.1 (P01a, P01b; P01c is all sub-page).

Every expectation is the counter line measured on Linux 6.18.44; the pool is 8 pages.
Also covers kernel-semantics.md §5.4 row "MAP_SHARED on hugetlbfs file", §9.2 rows "shared
mmap", "fault on reserved shared index" (counters only; the cgroup side is in
test_cgroup_flows.py P06a) and trace T1's steps (test_traces.py replays T1 itself).
"""

from __future__ import annotations

import pytest
from helpers import Seq, child_touch, look, replay, row, rows

# live-kernel.md §3.1 P01a: shared file, reserve at mmap, fault, munmap, remap.
# Skipped rows: none of the counters; the measured "close(fd) while mapped" row follows a
# re-open of the file that format 1 cannot express (a closed file can only be named, not
# reopened), so the scenario's handle is closed once, at "close(fd) (file still exists)".
P01A = Seq("live-kernel.md §3.1 P01a", pool=8, rows=rows(
    row("mount a hugetlbfs (setup)", "mount", name="hp"),
    row("open(O_CREAT) size 0", "create", "T=8 F=8 R=0 S=0", file="hp/f"),
    row("ftruncate(4p)", "truncate", "T=8 F=8 R=0 S=0", file="hp/f", size=4),
    row("mmap(4p, SHARED)", "mmap", "T=8 F=8 R=4 S=0", map="m", file="hp/f", length=4),
    row("write fault page0", "touch", "T=8 F=7 R=3 S=0", map="m", page=0),
    row("read fault page1", "touch", "T=8 F=6 R=2 S=0", map="m", page=1, write=False),
    row("madvise(POPULATE_WRITE page2)", "touch", "T=8 F=5 R=1 S=0", map="m", page=2),
    row("madvise(POPULATE_READ page2) again", "touch", "T=8 F=5 R=1 S=0", map="m", page=2,
        write=False),
    row("madvise(DONTNEED page0)", "madvise", "T=8 F=5 R=1 S=0", map="m", page=0,
        advice="dontneed"),
    row("munmap(4p)", "munmap", "T=8 F=5 R=1 S=0", map="m"),
    row("mmap(4p, SHARED) again", "mmap", "T=8 F=5 R=1 S=0", map="m", file="hp/f", length=4),
    row("munmap again", "munmap", "T=8 F=5 R=1 S=0", map="m"),
    row("close(fd)  (file still exists)", "close", "T=8 F=5 R=1 S=0", file="hp/f"),
    row("ftruncate(2p) shrink", "truncate", "T=8 F=6 R=0 S=0", file="hp/f", size=2),
    row("ftruncate(6p) grow", "truncate", "T=8 F=6 R=0 S=0", file="hp/f", size=6),
    row("mmap(6p, SHARED)", "mmap", "T=8 F=6 R=4 S=0", map="m", file="hp/f", length=6),
    row("fallocate(0, p4..p5)", "fallocate", "T=8 F=4 R=2 S=0", file="hp/f", offset=4,
        length=2),
    row("fallocate(PUNCH|KEEP, p0)", "punch", "T=8 F=5 R=2 S=0", file="hp/f", offset=0,
        length=1),
    row("fallocate(PUNCH|KEEP, p3) (reserved, not faulted)", "punch", "T=8 F=5 R=2 S=0",
        file="hp/f", offset=3, length=1),
    child_touch("write fault page0 (after punch) -> exit:0", "m", 0, "T=8 F=4 R=2 S=0"),
    child_touch("write fault page3 (after punch) -> exit:0", "m", 3, "T=8 F=3 R=1 S=0"),
    row("MADV_REMOVE page4", "madvise", "T=8 F=4 R=1 S=0", map="m", page=4, advice="remove"),
    row("unlink while mapped+open", "unlink", "T=8 F=4 R=1 S=0", file="hp/f"),
    # "close(fd) while mapped": not expressible (see above); the counters did not move.
    row("munmap -> last ref gone", "munmap", "T=8 F=8 R=0 S=0", map="m"),
))

# live-kernel.md §3.1 P01b: fallocate without mmap; ftruncate beyond pool; mmap beyond pool.
# Every row is in whole pages; the "st_size" rows become size[...] observations.
P01B = Seq("live-kernel.md §3.1 P01b", pool=8, rows=rows(
    row("mount (setup)", "mount", name="hp"),
    row("create the empty file (setup)", "create", "T=8 F=8 R=0 S=0", file="hp/f"),
    row("fallocate(0, 0..3p) on empty file", "fallocate", "T=8 F=5 R=0 S=0", file="hp/f",
        offset=0, length=3),
    look("st_size after fallocate -> 3", "T=8 F=5 R=0 S=0 size[hp/f]=3"),
    row("fallocate(KEEP_SIZE, 3p..5p)", "fallocate", "T=8 F=3 R=0 S=0", file="hp/f",
        offset=3, length=2, keep_size=True),
    look("st_size -> 3", "T=8 F=3 R=0 S=0 size[hp/f]=3"),
    row("fallocate(0, 5p..12p) (> free)", "fallocate", "T=8 F=0 R=0 S=0", result="ENOSPC",
        file="hp/f", offset=5, length=7),
    look("st_size -> 3", "T=8 F=0 R=0 S=0 size[hp/f]=3"),
    row("ftruncate(0)", "truncate", "T=8 F=8 R=0 S=0", file="hp/f", size=0),
    row("ftruncate(100p) (no reservation)", "truncate", "T=8 F=8 R=0 S=0", file="hp/f",
        size=100),
    # live-kernel.md §7 item 1: the root cgroup's rsvd.max_usage showed 100 pages after this
    # failed mmap (the cgroup charge succeeded before the global check failed); the probe ran
    # in the root cgroup, the scenario's init runs in `root`.
    row("mmap(100p SHARED) > pool", "mmap", "T=8 F=8 R=0 S=0 rt.r=0 rt.rsvd_max_usage=100",
        result="ENOMEM", map="big", file="hp/f", length=100),
    row("mmap(8p SHARED) == pool", "mmap", "T=8 F=8 R=8 S=0", map="a", file="hp/f", length=8),
    row("mmap(1p at off 8p) pool exhausted", "mmap", "T=8 F=8 R=8 S=0", result="ENOMEM",
        map="b", file="hp/f", offset=8, length=1),
    row("mmap(4p at off 0) overlapping (already rsvd)", "mmap", "T=8 F=8 R=8 S=0", map="c",
        file="hp/f", length=4),
    row("munmap all [a]", "munmap", map="a"),
    row("munmap all (reservation stays with inode)", "munmap", "T=8 F=8 R=8 S=0", map="c"),
    row("ftruncate(2p)", "truncate", "T=8 F=8 R=2 S=0", file="hp/f", size=2),
    row("close+unlink [close]", "close", file="hp/f"),
    row("close+unlink", "unlink", "T=8 F=8 R=0 S=0", file="hp/f"),
))

# live-kernel.md §3.1 P01c (misaligned / partial operations) is not replayed: every row is a
# byte size that is not a whole number of huge pages (ftruncate(1p+4096), mmap(len=1p+4096),
# munmap(a, 4096), mmap(off=4096), sub-page fallocate and punch) or PUNCH_HOLE without
# KEEP_SIZE, none of which format 1 can express (sizes are in huge pages; punch always
# carries KEEP_SIZE).

SEQUENCES = [P01A, P01B]


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name.rsplit(" ", 1)[-1])
def test_measured_sequence(seq: Seq) -> None:
    replay(seq)
