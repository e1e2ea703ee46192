"""Scenario format 1: the operations, their arguments, and a validated scenario.

This module is the contract of ../shared/spec/scenario-format.md in code: which operations
exist, which arguments each takes (type, default, which name it introduces or uses), and the
`Scenario`/`Step` objects every backend, the runner and the fuzzer share.  Loading YAML into
these objects (with line numbers in every error) lives in `hugetlbsim.format.loader`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ADVICE",
    "BYTE_ARGS",
    "CGROUP_INTERFACES",
    "CGROUP_KEYS",
    "CGROUP_V1_ONLY_KEYS",
    "CGROUP_V2_KEYS",
    "EXPECT_KEYS",
    "NULLABLE_KEYS",
    "OPS",
    "PAGESIZES",
    "POOL_ARGS",
    "POOL_KEYS",
    "RESULTS",
    "SECTION_KEYS",
    "SHM_MMAP_ARGS",
    "TOP_KEYS",
    "UNSIGNED_MAX",
    "VALUE_KINDS",
    "Arg",
    "ArgKind",
    "Scenario",
    "Step",
]

ArgKind = Literal[
    "int", "bool", "limit", "advice",
    "proc", "map", "file", "memfd", "shm", "cgroup", "mount",
]
"""How an argument is checked: a value type, or the kind of name it refers to."""
VALUE_KINDS = frozenset({"int", "bool", "limit", "advice"})
"""The argument kinds that are values; the others name something."""
ADVICE = ("dontneed", "remove")
"""The values of madvise's ``advice``."""


@dataclass(frozen=True)
class Arg:
    """One argument of an operation."""

    name: str
    kind: ArgKind
    required: bool = True
    default: Any = None
    introduces: bool = False
    """The step brings this name to life (mount, mmap, spawn...), so it must be free."""


def _a(name: str, kind: ArgKind, default: Any = None, *, required: bool = False,
       introduces: bool = False) -> Arg:
    return Arg(name, kind, required, default, introduces)


def _req(name: str, kind: ArgKind, *, introduces: bool = False) -> Arg:
    return Arg(name, kind, True, None, introduces)


_PROC = _a("proc", "proc", "init")

OPS: dict[str, tuple[Arg, ...]] = {
    "pool": (_a("pages", "int"), _a("overcommit", "int")),
    "mount": (_req("name", "mount", introduces=True), _a("size", "int"), _a("min_size", "int")),
    "umount": (_req("name", "mount"),),
    "cgroup": (_req("name", "cgroup", introduces=True), _a("limit", "limit"),
               _a("rsvd_limit", "limit")),
    "rmdir": (_req("cgroup", "cgroup"),),
    "spawn": (_req("proc", "proc", introduces=True), _a("cgroup", "cgroup", "root")),
    "attach": (_req("proc", "proc"), _req("cgroup", "cgroup")),
    "fork": (_req("proc", "proc"), _req("child", "proc", introduces=True)),
    "exit": (_req("proc", "proc"),),
    "create": (_req("file", "file", introduces=True), _a("size", "int"), _PROC),
    "memfd": (_req("file", "memfd", introduces=True), _a("size", "int"), _PROC),
    "truncate": (_req("file", "file"), _req("size", "int"), _PROC),
    "fallocate": (_req("file", "file"), _req("offset", "int"), _req("length", "int"),
                  _a("keep_size", "bool", False), _PROC),
    "punch": (_req("file", "file"), _req("offset", "int"), _req("length", "int"), _PROC),
    "close": (_req("file", "file"),),
    "unlink": (_req("file", "file"),),
    "shmget": (_req("shm", "shm", introduces=True), _req("size", "int"),
               _a("noreserve", "bool", False), _PROC),
    "shmrm": (_req("shm", "shm"),),
    "mmap": (_req("proc", "proc"), _req("map", "map", introduces=True), _a("file", "file"),
             _a("shm", "shm"), _a("anon", "bool", False), _a("offset", "int", 0),
             _a("length", "int"), _a("shared", "bool", True), _a("noreserve", "bool", False),
             _a("writable", "bool", True), _a("populate", "bool", False)),
    "munmap": (_req("proc", "proc"), _req("map", "map"), _a("offset", "int", 0),
               _a("length", "int")),
    "mprotect": (_req("proc", "proc"), _req("map", "map"), _a("offset", "int", 0),
                 _a("length", "int"), _req("writable", "bool")),
    "touch": (_req("proc", "proc"), _req("map", "map"), _req("page", "int"),
              _a("count", "int", 1), _a("write", "bool", True)),
    "madvise": (_req("proc", "proc"), _req("map", "map"), _req("page", "int"),
                _a("count", "int", 1), _req("advice", "advice")),
}

RESULTS = ("ok", "ENOMEM", "ENOSPC", "EINVAL", "EBUSY", "ENOENT", "EEXIST", "EPERM",
           "EACCES", "ESRCH", "EFBIG", "EOVERFLOW", "SIGBUS", "SIGSEGV")
"""The format's results, plus EACCES (MADV_REMOVE or mprotect PROT_WRITE where the mapping
may not write), ESRCH (a process whose spawn failed), EFBIG (fallocate or punch whose
offset + length passes 2^63 - 1 bytes) and EOVERFLOW (mmap whose offset + length does)."""
BYTE_ARGS: dict[str, tuple[str, ...]] = {
    "create": ("size",), "memfd": ("size",), "truncate": ("size",),
    "fallocate": ("offset", "length"), "punch": ("offset", "length"), "shmget": ("size",),
    "mmap": ("offset", "length"), "mount": ("size", "min_size"),
    "cgroup": ("limit", "rsvd_limit"),
}
"""The arguments the kernel receives in bytes (pages times the page size, in a 64-bit
argument or a number written to a file): a value whose bytes pass 2^64 - 1 cannot be given
to the kernel at all.  (Page indexes and counts of munmap, mprotect, touch and madvise are
bounded by their mapping; pool sizes are page counts.)"""

CGROUP_KEYS = ("usage", "rsvd", "max_usage", "rsvd_max_usage", "limit", "rsvd_limit",
               "failcnt", "rsvd_failcnt")
CGROUP_V2_KEYS = ("usage", "rsvd", "limit", "rsvd_limit", "events", "events_local", "memory")
"""The keys a cgroup expectation may hold under ``cgroups: v2`` (``memory`` only with
``memory_accounting: true``)."""
CGROUP_V1_ONLY_KEYS = tuple(k for k in CGROUP_KEYS if k not in CGROUP_V2_KEYS)
"""v1 files that cgroup v2 does not have (watermarks, failcnts)."""
CGROUP_INTERFACES = ("v1", "v2")
"""The values of the top-level ``cgroups``."""
POOL_KEYS = ("total", "free", "rsvd", "surp", "nr_hugepages")
EXPECT_KEYS = ("result", *POOL_KEYS, "cgroup", "mount", "file")
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "cgroup": CGROUP_KEYS,
    "mount": ("free",),
    "file": ("blocks", "size"),
}
"""The keys an expectation may hold per cgroup / mount / file."""
NULLABLE_KEYS = frozenset({"limit", "rsvd_limit", "free"})
"""Expectation keys whose value may be null (unlimited limit, mount without size)."""
UNSIGNED_MAX = (1 << 64) - 1
"""The largest counter value (an unsigned long): an underflow of n reads as 2^64 - n."""
SHM_MMAP_ARGS = ("proc", "map", "shm", "writable")
"""The only arguments an mmap of a shm segment may give (it maps the whole segment)."""

TOP_KEYS = ("format", "name", "pagesize", "kernel", "cgroups", "memory_accounting", "pool",
            "steps")
"""The top-level keys of format 1; others are extensions kept in `Scenario.extra`."""
POOL_ARGS = ("pages", "overcommit")
"""The keys of the top-level ``pool``."""
PAGESIZES = {"2M": 2 << 20, "1G": 1 << 30}


@dataclass(frozen=True, slots=True)
class Step:
    """One operation with its arguments (defaults filled in) and optional expectations."""

    index: int
    op: str
    args: dict[str, Any]
    expect: dict[str, Any] | None = None
    line: int = 0
    """1-based line of the step in its file (0 when built in code)."""


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: initial pool, page size and the steps."""

    steps: tuple[Step, ...]
    name: str = ""
    pagesize: str = "2M"
    pool_pages: int = 0
    pool_overcommit: int = 0
    path: str = "<scenario>"
    kernel: str | None = None
    """The kernel line the expect blocks describe (``kernel:``); None: not said."""
    cgroups: str = "v1"
    """The hugetlb cgroup interface, ``v1`` or ``v2`` (``cgroups:``)."""
    memory_accounting: bool = False
    """cgroup2's ``memory_hugetlb_accounting`` (v2 only, 6.7 and later)."""
    extra: dict[str, Any] = field(default_factory=dict)
