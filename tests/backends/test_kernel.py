"""The kernel backend against the live measurements of live-kernel.md.

Each scenario below replays a measured sequence (named after its probe, e.g. P01a) through
`KernelSession.apply`/`state`; its ``expect`` blocks are the measured counters.  These tests need
root, hugetlbfs, the hugetlb cgroup controller and an idle pool, and they change machine-global
state, so they run serially and check at the end that the machine is as they found it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.kernel import (
    LOCK_FILE,
    KernelBackend,
    KernelSession,
    acquire_lock,
    machine_unavailable,
    pool_busy,
)
from hugetlbsim.format.loader import load_text
from hugetlbsim.format.scenario import OPS, Scenario


def _unavailable() -> str | None:
    """Why these tests cannot run; the pool is read under the machine-wide lock, so a
    session of a concurrent run is never mistaken for a busy machine."""
    reason = machine_unavailable()
    if reason is not None:
        return reason
    fd = acquire_lock(os.path.join("/tmp", LOCK_FILE), LOCK_WAIT)
    try:
        if _pool() != (0, 0, 0, 0, 0):
            return "the huge page pool is not idle (HugePages_Total/Free/Rsvd/Surp, overcommit)"
    finally:
        os.close(fd)
    return None


def _pool() -> tuple[int, ...]:
    """HugePages_Total, Free, Rsvd, Surp and nr_overcommit_hugepages."""
    with open("/proc/meminfo") as f:
        mi = dict(line.split(":") for line in f)
    with open("/proc/sys/vm/nr_overcommit_hugepages") as f:
        overcommit = int(f.read())
    return (*(int(mi["HugePages_" + k]) for k in ("Total", "Free", "Rsvd", "Surp")), overcommit)


def _our_mounts() -> list[str]:
    """hugetlbfs and hugetlb cgroup mounts other than the system's /dev/hugepages."""
    with open("/proc/mounts") as f:
        rows = [line.split() for line in f]
    return [r[1] for r in rows if (r[2] == "hugetlbfs" and r[1] != "/dev/hugepages")
            or (r[2] == "cgroup" and "hugetlb" in r[3].split(","))]


def _backend() -> KernelBackend:
    """A backend that waits for other hugetlbsim sessions on this machine to finish."""
    return KernelBackend(lock_timeout=LOCK_WAIT)


LOCK_WAIT = 300.0
REASON = _unavailable()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


@pytest.fixture(scope="module", autouse=True)
def machine_restored() -> Iterator[None]:
    """After the whole file: pool idle, overcommit 0, no hugetlbfs or hugetlb cgroup mounts
    (checked under the session lock, so a concurrent session elsewhere cannot interfere)."""
    yield
    fd = acquire_lock(os.path.join("/tmp", LOCK_FILE), LOCK_WAIT)
    try:
        assert _pool() == (0, 0, 0, 0, 0)
        assert _our_mounts() == []
    finally:
        os.close(fd)


_SECTIONS = {"cgroup": "cgroups", "mount": "mounts", "file": "files"}


def replay(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Run a scenario through a kernel session, checking every ``expect`` against the state."""
    scenario = load_text(textwrap.dedent(text))
    out = []
    with _backend().open(scenario) as session:
        for step in scenario.steps:
            result = session.apply(step.op, step.args)
            state = session.state()
            out.append((result, state))
            for key, want in (step.expect or {}).items():
                if key == "result":
                    got: Any = result
                elif key in _SECTIONS:
                    got = {name: {c: state[_SECTIONS[key]].get(name, {}).get(c) for c in counters}
                           for name, counters in want.items()}
                    want = {name: {c: None if v == "max" else v for c, v in counters.items()}
                            for name, counters in want.items()}
                else:
                    got = state[key]
                assert got == want, (f"step {step.index} ({step.op} {step.args}, line "
                                     f"{step.line}): {key} is {got}, measured {want}")
    return out


def test_p01a_shared_file() -> None:
    """P01a: reservation at mmap, faults, munmap keeps the inode's reservation, truncate and
    punch; unlink while mapped frees everything at the last munmap."""
    replay("""
        format: 1
        pool: {pages: 8}
        steps:
          - mount: {name: hp}
          - create: {file: hp/f}
            expect: {total: 8, free: 8, rsvd: 0, surp: 0, file: {hp/f: {size: 0, blocks: 0}}}
          - truncate: {file: hp/f, size: 4}
            expect: {result: ok, free: 8, rsvd: 0}
          - mmap: {proc: init, map: m, file: hp/f, length: 4, shared: true}
            expect: {result: ok, free: 8, rsvd: 4}
          - touch: {proc: init, map: m, page: 0}
            expect: {result: ok, free: 7, rsvd: 3}
          - touch: {proc: init, map: m, page: 1, write: false}
            expect: {result: ok, free: 6, rsvd: 2}
          - touch: {proc: init, map: m, page: 2}
            expect: {result: ok, free: 5, rsvd: 1, file: {hp/f: {blocks: 3, size: 4}}}
          - touch: {proc: init, map: m, page: 2, write: false}
            expect: {result: ok, free: 5, rsvd: 1}
          - madvise: {proc: init, map: m, page: 0, advice: dontneed}
            expect: {result: ok, free: 5, rsvd: 1}
          - munmap: {proc: init, map: m}
            expect: {result: ok, free: 5, rsvd: 1}
          - mmap: {proc: init, map: m, file: hp/f, length: 4}
            expect: {free: 5, rsvd: 1}
          - munmap: {proc: init, map: m}
          - close: {file: hp/f}
            expect: {free: 5, rsvd: 1, file: {hp/f: {blocks: 3}}}
          - truncate: {file: hp/f, size: 2}
            expect: {result: ok, free: 6, rsvd: 0}
          - truncate: {file: hp/f, size: 6}
            expect: {result: ok, free: 6, rsvd: 0}
          - mmap: {proc: init, map: m, file: hp/f, length: 6}
            expect: {free: 6, rsvd: 4}
          - fallocate: {file: hp/f, offset: 4, length: 2}
            expect: {result: ok, free: 4, rsvd: 2}
          - punch: {file: hp/f, offset: 0, length: 1}
            expect: {result: ok, free: 5, rsvd: 2}
          - punch: {file: hp/f, offset: 3, length: 1}
            expect: {result: ok, free: 5, rsvd: 2}
          - touch: {proc: init, map: m, page: 0}
            expect: {result: ok, free: 4, rsvd: 2}
          - touch: {proc: init, map: m, page: 3}
            expect: {result: ok, free: 3, rsvd: 1}
          - madvise: {proc: init, map: m, page: 4, advice: remove}
            expect: {result: ok, free: 4, rsvd: 1}
          - unlink: {file: hp/f}
            expect: {result: ok, free: 4, rsvd: 1}
          - munmap: {proc: init, map: m}
            expect: {result: ok, total: 8, free: 8, rsvd: 0, surp: 0}
    """)


def test_p02a_private_file_with_holes() -> None:
    """P02a: a private mapping reserves its whole length; DONTNEED restores a reservation;
    munmap of an unfaulted page releases its reservation at once."""
    replay("""
        format: 1
        pool: {pages: 8}
        steps:
          - mount: {name: hp}
          - create: {file: hp/f, size: 4}
          - mmap: {proc: init, map: m, file: hp/f, length: 4, shared: false}
            expect: {result: ok, free: 8, rsvd: 4}
          - touch: {proc: init, map: m, page: 0, write: false}
            expect: {free: 7, rsvd: 3}
          - touch: {proc: init, map: m, page: 0}
            expect: {free: 7, rsvd: 3}
          - touch: {proc: init, map: m, page: 1}
            expect: {free: 6, rsvd: 2}
          - touch: {proc: init, map: m, page: 2, write: false}
            expect: {free: 5, rsvd: 1}
          - touch: {proc: init, map: m, page: 2}
            expect: {free: 5, rsvd: 1}
          - madvise: {proc: init, map: m, page: 1, advice: dontneed}
            expect: {result: ok, free: 6, rsvd: 2}
          - touch: {proc: init, map: m, page: 1}
            expect: {free: 5, rsvd: 1}
          - munmap: {proc: init, map: m, offset: 3, length: 1}
            expect: {result: ok, free: 5, rsvd: 0}
          - munmap: {proc: init, map: m, offset: 0, length: 3}
            expect: {result: ok, free: 8, rsvd: 0}
          - close: {file: hp/f}
          - unlink: {file: hp/f}
            expect: {total: 8, free: 8, rsvd: 0, surp: 0, file: {}}
    """)


def test_p03b_sysv_shm() -> None:
    """P03b: SHM_HUGETLB reserves at shmget; shmat/shmdt change nothing; IPC_RMID while
    attached destroys at the last detach; SHM_NORESERVE reserves nothing."""
    replay("""
        format: 1
        pool: {pages: 8}
        steps:
          - shmget: {shm: s, size: 3}
            expect: {result: ok, free: 8, rsvd: 3}
          - mmap: {proc: init, map: a, shm: s}
            expect: {result: ok, free: 8, rsvd: 3}
          - touch: {proc: init, map: a, page: 0}
            expect: {free: 7, rsvd: 2}
          - touch: {proc: init, map: a, page: 1, write: false}
            expect: {free: 6, rsvd: 1}
          - munmap: {proc: init, map: a}
            expect: {free: 6, rsvd: 1}
          - mmap: {proc: init, map: a, shm: s}
            expect: {free: 6, rsvd: 1}
          - shmrm: {shm: s}
            expect: {result: ok, free: 6, rsvd: 1}
          - munmap: {proc: init, map: a}
            expect: {free: 8, rsvd: 0}
          - shmget: {shm: big, size: 9}
            expect: {result: ENOMEM, free: 8, rsvd: 0}
          - shmget: {shm: n, size: 3, noreserve: true}
            expect: {result: ok, free: 8, rsvd: 0}
          - mmap: {proc: init, map: b, shm: n}
          - touch: {proc: init, map: b, page: 0}
            expect: {result: ok, free: 7, rsvd: 0}
          - munmap: {proc: init, map: b}
          - shmrm: {shm: n}
            expect: {total: 8, free: 8, rsvd: 0}
    """)


def test_p04a_size_mount_statfs() -> None:
    """P04a: a size=8M mount counts reservations and allocations in statfs f_bfree; mmap over
    the size is ENOMEM, fallocate ENOSPC (keeping what it allocated), a fault SIGBUS."""
    replay("""
        format: 1
        pool: {pages: 8}
        steps:
          - mount: {name: hp, size: 4}
            expect: {result: ok, mount: {hp: {free: 4}}}
          - create: {file: hp/f, size: 16}
          - mmap: {proc: init, map: m, file: hp/f, length: 2}
            expect: {result: ok, free: 8, rsvd: 2, mount: {hp: {free: 2}}}
          - touch: {proc: init, map: m, page: 0}
            expect: {free: 7, rsvd: 1, mount: {hp: {free: 2}}}
          - mmap: {proc: init, map: m2, file: hp/f, offset: 2, length: 3}
            expect: {result: ENOMEM, free: 7, rsvd: 1}
          - fallocate: {file: hp/f, offset: 2, length: 3}
            expect: {result: ENOSPC, free: 5, rsvd: 1, mount: {hp: {free: 0}}}
          - fallocate: {file: hp/f, offset: 4, length: 1}
            expect: {result: ENOSPC, free: 5, rsvd: 1, mount: {hp: {free: 0}}}
          - mmap: {proc: init, map: n, file: hp/f, length: 16, noreserve: true}
            expect: {result: ok, free: 5, rsvd: 1}
          - touch: {proc: init, map: n, page: 5}
            expect: {result: SIGBUS, free: 5, rsvd: 1}
          - touch: {proc: init, map: m, page: 1}
            expect: {result: ok, free: 4, rsvd: 0, mount: {hp: {free: 0}}}
          - munmap: {proc: init, map: m}
          - munmap: {proc: init, map: n}
            expect: {free: 4, rsvd: 0, mount: {hp: {free: 0}}}
          - truncate: {file: hp/f, size: 0}
            expect: {result: ok, free: 8, rsvd: 0, mount: {hp: {free: 4}}}
          - close: {file: hp/f}
          - umount: {name: hp}
            expect: {result: ok, free: 8, rsvd: 0, mount: {}}
    """)


def test_p06a_cgroup_charges_two_cgroups() -> None:
    """P06a: the reserving cgroup pays r, the faulting one u; an allocation without a
    reservation charges both to the allocator; punch and truncate uncharge whoever paid."""
    zero = "{usage: 0, rsvd: 0}"
    replay(f"""
        format: 1
        pool: {{pages: 16}}
        steps:
          - mount: {{name: hp}}
          - cgroup: {{name: A}}
          - cgroup: {{name: B}}
          - spawn: {{proc: pa, cgroup: A}}
          - spawn: {{proc: pb, cgroup: B}}
          - create: {{file: hp/f, size: 4}}
          - mmap: {{proc: pa, map: m, file: hp/f, length: 4}}
            expect: {{free: 16, rsvd: 4, cgroup: {{root: {{usage: 0, rsvd: 4}},
                     A: {{usage: 0, rsvd: 4}}, B: {zero}}}}}
          - touch: {{proc: pa, map: m, page: 0}}
            expect: {{free: 15, rsvd: 3, cgroup: {{A: {{usage: 1, rsvd: 4}}}}}}
          - touch: {{proc: pa, map: m, page: 1, write: false}}
            expect: {{free: 14, rsvd: 2, cgroup: {{A: {{usage: 2, rsvd: 4}}}}}}
          - touch: {{proc: pa, map: m, page: 2}}
            expect: {{free: 13, rsvd: 1, cgroup: {{A: {{usage: 3, rsvd: 4}}}}}}
          - munmap: {{proc: pa, map: m}}
            expect: {{free: 13, rsvd: 1, cgroup: {{A: {{usage: 3, rsvd: 4}}}}}}
          - mmap: {{proc: pb, map: m, file: hp/f, length: 4}}
            expect: {{free: 13, rsvd: 1, cgroup: {{A: {{usage: 3, rsvd: 4}}, B: {zero}}}}}
          - touch: {{proc: pb, map: m, page: 3}}
            expect: {{free: 12, rsvd: 0, cgroup: {{root: {{usage: 4, rsvd: 4}},
                     A: {{usage: 3, rsvd: 4}}, B: {{usage: 1, rsvd: 0}}}}}}
          - fallocate: {{file: hp/f, offset: 4, length: 2, proc: pb}}
            expect: {{result: ok, free: 10, rsvd: 0, cgroup: {{root: {{usage: 6, rsvd: 6}},
                     A: {{usage: 3, rsvd: 4}}, B: {{usage: 3, rsvd: 2}}}}}}
          - punch: {{file: hp/f, offset: 0, length: 1, proc: pb}}
            expect: {{free: 11, cgroup: {{root: {{usage: 5, rsvd: 5}},
                     A: {{usage: 2, rsvd: 3}}, B: {{usage: 3, rsvd: 2}}}}}}
          - punch: {{file: hp/f, offset: 4, length: 1, proc: pb}}
            expect: {{free: 12, cgroup: {{root: {{usage: 4, rsvd: 4}},
                     A: {{usage: 2, rsvd: 3}}, B: {{usage: 2, rsvd: 1}}}}}}
          - truncate: {{file: hp/f, size: 2, proc: pb}}
            expect: {{free: 15, rsvd: 0, cgroup: {{root: {{usage: 1, rsvd: 1}},
                     A: {{usage: 1, rsvd: 1}}, B: {zero}}}}}
          - munmap: {{proc: pb, map: m}}
          - mmap: {{proc: pb, map: m, file: hp/f, length: 2}}
            expect: {{free: 15, rsvd: 1, cgroup: {{root: {{usage: 1, rsvd: 2}},
                     A: {{usage: 1, rsvd: 1}}, B: {{usage: 0, rsvd: 1}}}}}}
          - unlink: {{file: hp/f}}
          - close: {{file: hp/f}}
            expect: {{free: 15, rsvd: 1, cgroup: {{root: {{usage: 1, rsvd: 2}}}}}}
          - munmap: {{proc: pb, map: m}}
            expect: {{free: 16, rsvd: 0, cgroup: {{root: {zero}, A: {zero}, B: {zero}}}}}
    """)


def test_p07a_rsvd_limit() -> None:
    """P07a: over rsvd.limit, mmap/shmget are ENOMEM, fallocate ENOSPC, a NORESERVE fault
    SIGBUS (also in a forked child); rsvd.failcnt counts every refused call or fault."""
    replay("""
        format: 1
        pool: {pages: 16}
        steps:
          - mount: {name: hp}
          - cgroup: {name: L, rsvd_limit: 2}
            expect: {result: ok, cgroup: {L: {rsvd_limit: 2, limit: max}}}
          - spawn: {proc: p, cgroup: L}
          - create: {file: hp/f, size: 8}
          - mmap: {proc: p, map: big, file: hp/f, length: 3}
            expect: {result: ENOMEM, rsvd: 0, cgroup: {L: {failcnt: 0, rsvd_failcnt: 1,
                     max_usage: 0, rsvd_max_usage: 0}}}
          - mmap: {proc: p, map: m, file: hp/f, length: 2}
            expect: {result: ok, rsvd: 2, cgroup: {L: {usage: 0, rsvd: 2}}}
          - mmap: {proc: p, map: ap, anon: true, shared: false, length: 1}
            expect: {result: ENOMEM}
          - mmap: {proc: p, map: as, anon: true, length: 1}
            expect: {result: ENOMEM}
          - shmget: {shm: s, size: 1, proc: p}
            expect: {result: ENOMEM}
          - fallocate: {file: hp/f, offset: 4, length: 1, proc: p}
            expect: {result: ENOSPC, free: 16, rsvd: 2}
          - mmap: {proc: p, map: n, file: hp/f, length: 8, noreserve: true}
            expect: {result: ok}
          - touch: {proc: p, map: n, page: 5}
            expect: {result: SIGBUS, free: 16, rsvd: 2}
          - fork: {proc: p, child: c}
          - touch: {proc: c, map: n, page: 5}
            expect: {result: SIGBUS, free: 16, rsvd: 2}
          - exit: {proc: c}
          - touch: {proc: p, map: m, page: 0}
            expect: {result: ok, free: 15, rsvd: 1, cgroup: {L: {usage: 1, rsvd: 2, failcnt: 0,
                     rsvd_failcnt: 7, max_usage: 1, rsvd_max_usage: 2}}}
          - cgroup: {name: L, rsvd_limit: 1}
            expect: {result: EBUSY, cgroup: {L: {rsvd_limit: 2}}}
          - exit: {proc: p}
          - truncate: {file: hp/f, size: 0}
            expect: {free: 16, rsvd: 0, cgroup: {L: {usage: 0, rsvd: 0}}}
    """)


def test_p14a_rsvd_underflow_with_forked_child() -> None:
    """P14a: the owner munmaps private pages a forked child still maps: HugePages_Rsvd reads
    2^64 - 2 until the child exits."""
    replay("""
        format: 1
        pool: {pages: 4}
        steps:
          - mmap: {proc: init, map: m, anon: true, shared: false, length: 2}
          - touch: {proc: init, map: m, page: 0, count: 2}
            expect: {result: ok, total: 4, free: 2, rsvd: 0}
          - fork: {proc: init, child: c}
            expect: {result: ok, free: 2, rsvd: 0}
          - munmap: {proc: init, map: m}
            expect: {result: ok, free: 2, rsvd: 18446744073709551614}
          - exit: {proc: c}
            expect: {result: ok, total: 4, free: 4, rsvd: 0}
    """)


def test_harness_semantics() -> None:
    """What the backend adds around the syscalls: holes left by a partial munmap are never
    touched again, absent objects answer as scenario-format.md says, a read-only mapping
    refuses writes, busy mounts and cgroups say EBUSY."""
    replay("""
        format: 1
        pool: {pages: 8}
        steps:
          - mount: {name: hp}
          - mmap: {proc: init, map: m, anon: true, shared: false, length: 4}
            expect: {result: ok, rsvd: 4}
          - munmap: {proc: init, map: m, offset: 1, length: 1}
            expect: {result: ok, rsvd: 3}
          - munmap: {proc: init, map: m, offset: 1, length: 1}
            expect: {result: ok, rsvd: 3}
          - touch: {proc: init, map: m, page: 0, count: 3}
            expect: {result: SIGSEGV, free: 7, rsvd: 2}
          - madvise: {proc: init, map: m, page: 0, count: 3, advice: dontneed}
            expect: {result: ENOMEM, free: 8, rsvd: 3}
          - mprotect: {proc: init, map: m, writable: false}
            expect: {result: ENOMEM}
          - touch: {proc: init, map: m, page: 0}
            expect: {result: SIGSEGV, free: 8}
          - touch: {proc: init, map: m, page: 0, write: false}
            expect: {result: ok, free: 7}
          - mprotect: {proc: init, map: m, offset: 2, writable: false}
            expect: {result: ok}
          - touch: {proc: init, map: m, page: 3}
            expect: {result: SIGSEGV, free: 7}
          - mmap: {proc: init, map: x, anon: true, length: 9}
            expect: {result: ENOMEM}
          - touch: {proc: init, map: x, page: 0}
            expect: {result: SIGSEGV}
          - madvise: {proc: init, map: x, page: 0, advice: dontneed}
            expect: {result: ENOMEM}
          - munmap: {proc: init, map: x}
            expect: {result: ok}
          - mount: {name: bad, size: 1, min_size: 2}
            expect: {result: EINVAL, mount: {hp: {free: null}}}
          - create: {file: bad/f, size: 1}
            expect: {result: ENOENT}
          - truncate: {file: bad/f, size: 2}
            expect: {result: ENOENT}
          - shmget: {shm: s, size: 9}
            expect: {result: ENOMEM}
          - shmrm: {shm: s}
            expect: {result: EINVAL}
          - create: {file: hp/f, size: 1}
          - umount: {name: hp}
            expect: {result: EBUSY}
          - memfd: {file: "memfd:x", size: 2}
            expect: {result: ok, file: {"memfd:x": {size: 2, blocks: 0}}}
          - fallocate: {file: "memfd:x", offset: 0, length: 1}
            expect: {result: ok, free: 6, file: {"memfd:x": {blocks: 1}}}
          - close: {file: "memfd:x"}
            expect: {free: 7, file: {hp/f: {size: 1}}}
          - cgroup: {name: a}
          - cgroup: {name: a/b, limit: 1}
            expect: {result: ok, cgroup: {a/b: {limit: 1, rsvd_limit: null}}}
          - spawn: {proc: p, cgroup: a/b}
          - cgroup: {name: c}
          - attach: {proc: p, cgroup: c}
          - attach: {proc: p, cgroup: a/b}
          - rmdir: {cgroup: c}
            expect: {result: ok}
          - rmdir: {cgroup: a/b}
            expect: {result: EBUSY}
          - rmdir: {cgroup: a}
            expect: {result: EBUSY}
    """)


def _args(op: str, **given: Any) -> dict[str, Any]:
    """Every argument of ``op`` with its default, as the loader passes them."""
    return {arg.name: given.get(arg.name, arg.default) for arg in OPS[op]}


def test_absent_process_and_busy_mount() -> None:
    """A spawn refused by its cgroup leaves no process (ESRCH later, charge-free file operations
    still run); a mount over one that refused to go (EBUSY) is torn down layer by layer."""
    with _backend().open(Scenario(steps=(), pool_pages=4)) as session:
        assert session.apply("spawn", _args("spawn", proc="p", cgroup="nope")) == "ENOENT"
        assert session.apply("mmap", _args("mmap", proc="p", map="m", anon=True,
                                            length=1)) == "ESRCH"
        assert session.apply("exit", _args("exit", proc="p")) == "ESRCH"
        assert session.apply("mount", _args("mount", name="hp")) == "ok"
        assert session.apply("create", _args("create", file="hp/f", size=2, proc="p")) == "ok"
        assert session.apply("fallocate", _args("fallocate", file="hp/f", offset=0, length=1,
                                                proc="p")) == "ESRCH"
        assert session.apply("umount", _args("umount", name="hp")) == "EBUSY"
        assert session.apply("mount", _args("mount", name="hp", size=2)) == "ok"
        assert session.state()["mounts"] == {"hp": {"free": 2}}
        assert session.apply("umount", _args("umount", name="gone")) == "EINVAL"


def test_refusals() -> None:
    """Scenarios the kernel backend will not run, and a busy pool."""
    backend = _backend()
    with pytest.raises(BackendUnavailable, match="2M pages only"):
        backend.open(Scenario(steps=(), pagesize="1G"))
    with pytest.raises(BackendUnavailable, match="could need 70"):
        backend.open(load_text("format: 1\npool: {pages: 60, overcommit: 10}\nsteps: []\n"))
    big = "format: 1\nsteps:\n  - pool: {overcommit: 40}\n  - pool: {pages: 30}\n"
    with pytest.raises(BackendUnavailable, match="could need 70"):
        backend.open(load_text(big))
    fd = acquire_lock(os.path.join("/tmp", LOCK_FILE), LOCK_WAIT)
    try:  # the pool is changed only while this test holds the machine-wide lock
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write("1")
        try:
            assert pool_busy() == ("HugePages_Total/Free/Rsvd/Surp = 1/1/0/0, "
                                   "nr_overcommit_hugepages = 0")
        finally:
            with open("/proc/sys/vm/nr_hugepages", "w") as f:
                f.write("0")
    finally:
        os.close(fd)


def test_one_session_at_a_time() -> None:
    """A second session refuses to start while one holds the machine."""
    with _backend().open(Scenario(steps=(), pool_pages=1)) as session:
        with pytest.raises(BackendUnavailable, match="another"):
            KernelBackend().open(Scenario(steps=()))
        assert session.state()["total"] == 1


_HOLDER = """
import json, sys, time
from hugetlbsim.backends.kernel import KernelBackend
from hugetlbsim.format.loader import load_text
scenario = load_text('''
format: 1
pool: {pages: 8}
steps:
  - mount: {name: hp, min_size: 1}
  - cgroup: {name: a, limit: 4}
  - spawn: {proc: p, cgroup: a}
  - create: {file: hp/f, size: 4, proc: p}
  - mmap: {proc: p, map: m, file: hp/f, length: 4}
  - touch: {proc: p, map: m, page: 0, count: 2}
  - shmget: {shm: s, size: 2, proc: p}
  - mmap: {proc: p, map: sm, shm: s}
  - touch: {proc: p, map: sm, page: 0}
  - mmap: {proc: init, map: a, anon: true, shared: false, length: 1}
  - touch: {proc: init, map: a, page: 0}
''')
session = KernelBackend(lock_timeout=300).open(scenario)
for step in scenario.steps:
    assert session.apply(step.op, step.args) != "error"
rec = session._rec
print(json.dumps({"rundir": rec.rundir, "shm": rec.shm,
                  "pids": [pid for pid, _ in rec.workers]}), flush=True)
time.sleep(120)
"""


def _start_holder() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    assert line, "the holder process failed: " + proc.stderr.read()
    return proc, json.loads(line)


def _assert_clean(info: dict[str, Any]) -> None:
    assert _pool() == (0, 0, 0, 0, 0)
    assert _our_mounts() == []
    with open("/proc/sysvipc/shm") as f:
        ids = {int(line.split()[1]) for line in f.readlines()[1:]}
    assert not ids & set(info["shm"])
    for pid in info["pids"]:
        assert not os.path.exists(f"/proc/{pid}") or _is_other_process(pid)
    assert not os.path.exists(info["rundir"])


def _is_other_process(pid: int) -> bool:
    """A live pid that is not a hugetlbsim worker (the pid was reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"hugetlbsim" not in f.read()
    except FileNotFoundError:
        return True


def test_sigkill_leftovers_are_cleaned_by_next_session() -> None:
    """A run SIGKILLed while it holds a mount (with min_size), a cgroup, a shm segment, a
    hugetlbfs file and mapped pages leaves them behind; the next session cleans them."""
    proc, info = _start_holder()
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert _pool()[0] == 8, "the killed run should have left its pool behind"
    assert any(m.startswith(info["rundir"]) for m in _our_mounts())
    with _backend().open(Scenario(steps=())) as session:
        assert session.state()["total"] == 0
    _assert_clean(info)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_tear_down(sig: signal.Signals) -> None:
    """SIGTERM or Ctrl-C (SIGINT) of a running session tears everything down at once."""
    proc, info = _start_holder()
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    _assert_clean(info)


def test_steps_per_second() -> None:
    """A typical ~50-step scenario with a state read after every step (prints the rate)."""
    steps = ["  - mount: {name: hp}", "  - cgroup: {name: a}", "  - spawn: {proc: p, cgroup: a}",
             "  - create: {file: hp/f, size: 8}"]
    for i in range(9):
        steps += [f"  - mmap: {{proc: p, map: m{i}, file: hp/f, length: 4}}",
                  f"  - touch: {{proc: p, map: m{i}, page: 0, count: 2}}",
                  f"  - madvise: {{proc: p, map: m{i}, page: 0, advice: dontneed}}",
                  f"  - munmap: {{proc: p, map: m{i}}}",
                  "  - truncate: {file: hp/f, size: 8}"]
    scenario = load_text("format: 1\npool: {pages: 8}\nsteps:\n" + "\n".join(steps) + "\n")
    start = time.perf_counter()
    session: KernelSession = _backend().open(scenario)
    opened = time.perf_counter()
    with session:
        for step in scenario.steps:
            session.apply(step.op, step.args)
            session.state()
        ran = time.perf_counter()
    done = time.perf_counter()
    n = len(scenario.steps)
    print(f"\n{n} steps: open {1e3 * (opened - start):.1f} ms, steps+state "
          f"{n / (ran - opened):.0f}/s, close {1e3 * (done - ran):.1f} ms")
