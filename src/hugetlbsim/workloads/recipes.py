"""What each program does with huge pages, as scenario steps: the recipes.

A recipe turns one program entry of a composition (its settings, already checked against the
recipe's `Param`s) into three lists of steps: ``start`` (the program comes up), ``use`` (its
steady state) and ``stop``.  Every step carries a `Note`: which program and process, what the
program is doing, and what the program does when the step fails (`Note.on_fail`): ``exits``
(stops with an error it reports), ``falls-back`` (keeps running without huge pages),
``handled`` (copes, e.g. DPDK's SIGBUS guard) or ``killed`` (dies by SIGBUS).

The sources each recipe follows are named in docs/workloads.md; steps are coarse (one ``touch``
with a count per range), so the cost of a plan grows with the model's fault path, not with the
number of steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["PG_AUX", "PROGRAMS", "Amount", "Note", "OnFail", "Param", "Phases", "Recipe", "Target",
           "pg_overhead"]

OnFail = Literal["exits", "falls-back", "handled", "killed", "none"]
"""What the program does when the step fails."""


@dataclass(frozen=True)
class Note:
    """What one scenario step stands for."""

    program: str
    """The program entry's name (``node`` for the composition's own setup)."""
    phase: str
    """``setup``, ``start``, ``use`` or ``stop``."""
    what: str
    """One line: what the program is doing, in its own terms."""
    process: str | None = None
    on_fail: OnFail = "none"
    consequence: str = ""
    """What happens to the program when the step fails, in its own terms."""


@dataclass(frozen=True)
class Amount:
    """A size (``bytes``) or a share of a reference size (``percent``)."""

    nbytes: int | None = None
    percent: float | None = None

    def of(self, reference: int) -> int:
        """Bytes, taking a percentage of ``reference``."""
        if self.percent is not None:
            return int(reference * self.percent / 100)
        return self.nbytes or 0


@dataclass(frozen=True)
class Param:
    """One setting of a program entry."""

    kind: Literal["size", "count", "bool", "choice", "amount"]
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""


Op = tuple[str, dict[str, Any], Note]
"""A step to emit: operation, arguments, note."""


@dataclass
class Phases:
    """A program's steps, by phase."""

    start: list[Op] = field(default_factory=list)
    use: list[Op] = field(default_factory=list)
    stop: list[Op] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """Where a program runs: its name, cgroup, hugetlbfs mount and the page size."""

    name: str
    cgroup: str
    mount: str
    pagesize: str
    page_bytes: int

    def pages(self, nbytes: int) -> int:
        """Huge pages holding ``nbytes``, rounded up."""
        return -(-nbytes // self.page_bytes)


@dataclass(frozen=True)
class Recipe:
    """A program: its settings and how they become steps."""

    kind: str
    summary: str
    params: dict[str, Param]
    expand: Callable[[Target, dict[str, Any]], Phases]
    uses_mount: Callable[[dict[str, Any]], bool] = lambda p: False
    confirmed: str = ""
    """How far a real program confirmed the recipe (docs/workloads.md)."""


def _note(t: Target, phase: str, what: str, process: str | None = None,
          on_fail: OnFail = "none", consequence: str = "") -> Note:
    return Note(t.name, phase, what, process, on_fail, consequence)


# -- PostgreSQL ---------------------------------------------------------------------------------

PG_AUX = ("checkpointer", "bgwriter", "walwriter", "autovacuum", "logrepl")
"""The postmaster's auxiliary processes in PostgreSQL 15 (forked at start, before clients)."""


def postgres(t: Target, p: dict[str, Any]) -> Phases:
    """sysv_shmem.c CreateAnonymousSegment: one MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB mapping of
    the shared memory size rounded up to the huge page size, at postmaster start; children
    inherit it by fork; pages are faulted as structures are initialised and buffers used."""
    shmem = p["shared_memory"] or p["shared_buffers"] + pg_overhead(p["shared_buffers"])
    n = t.pages(shmem)
    buffers = t.pages(p["shared_buffers"]) if p["shared_buffers"] else n
    startup = min(n, t.pages(p["startup"].of(shmem)) if p["startup"] is not None
                  else max(0, n - buffers))
    in_use = min(n - startup, t.pages(p["in_use"].of(p["shared_buffers"] or shmem)))
    pm, seg = t.name, f"{t.name}-shmem"
    on, ph = p["huge_pages"] == "on", Phases()
    ph.start += [
        ("spawn", {"proc": pm, "cgroup": t.cgroup},
         _note(t, "start", "pg_ctl starts the postmaster", pm)),
        ("mmap", {"proc": pm, "map": seg, "anon": True, "length": n},
         _note(t, "start", f"postmaster maps the shared memory ({n} pages, shared anonymous "
               "MAP_HUGETLB)", pm, "exits" if on else "falls-back",
               "FATAL: could not map anonymous shared memory (huge_pages=on): the server does "
               "not start" if on else
               "huge_pages=try: the postmaster maps normal pages instead and runs without "
               "huge pages")),
    ]
    if startup:
        ph.start.append(("touch", {"proc": pm, "map": seg, "page": 0, "count": startup},
                         _note(t, "start", f"postmaster initialises its shared structures "
                               f"({startup} pages)", pm, "killed",
                               "the postmaster dies with SIGBUS: the server does not start")))
    for aux in PG_AUX:
        ph.start.append(("fork", {"proc": pm, "child": f"{pm}-{aux}"},
                         _note(t, "start", f"postmaster forks the {aux}", pm)))
    backends = [f"{pm}-b{i + 1}" for i in range(max(1, p["backends"]))]
    for b in backends:
        ph.use.append(("fork", {"proc": pm, "child": b},
                       _note(t, "use", "a client connects: the postmaster forks a backend", pm)))
    share, rest = divmod(in_use, len(backends))
    page = startup
    for i, b in enumerate(backends):
        count = share + (1 if i < rest else 0)
        if count:
            ph.use.append(("touch", {"proc": b, "map": seg, "page": page, "count": count},
                           _note(t, "use", f"backend reads {count} pages into shared buffers", b,
                                 "killed", f"backend {b} dies with SIGBUS; the postmaster "
                                 "restarts every process (crash recovery)")))
            page += count
    for proc in [*reversed(backends), *(f"{pm}-{a}" for a in PG_AUX), pm]:
        ph.stop.append(("exit", {"proc": proc},
                        _note(t, "stop", "pg_ctl stop: the process exits", proc)))
    return ph


def pg_overhead(shared_buffers: int) -> int:
    """Shared memory beyond shared_buffers when only shared_buffers is given: measured on
    PostgreSQL 15 with default settings (about 6.5 MiB plus 1/64 of shared_buffers)."""
    return (13 << 19) + shared_buffers // 64


# -- QEMU ---------------------------------------------------------------------------------------

def qemu(t: Target, p: dict[str, Any]) -> Phases:
    """memory-backend-file (a temporary file created in mem-path, unlinked at once, ftruncated)
    or memory-backend-memfd hugetlb=on; mapped MAP_SHARED (share=on) or MAP_PRIVATE, with
    MAP_NORESERVE for reserve=off; prealloc=on populates every page at start, and a failure
    there ends QEMU with an error; otherwise guest RAM is faulted as the guest touches it."""
    n = t.pages(p["memory"])
    vm, ram = t.name, f"{t.name}-ram"
    memfd = p["backend"] == "memfd"
    share = p["share"] if p["share"] is not None else memfd
    ph = Phases()
    ph.start.append(("spawn", {"proc": vm, "cgroup": t.cgroup},
                     _note(t, "start", "QEMU starts", vm)))
    if memfd:
        path = f"memfd:{vm}"
        ph.start.append(("memfd", {"file": path, "size": n, "proc": vm},
                         _note(t, "start", "memory-backend-memfd: memfd_create(MFD_HUGETLB) "
                               "and ftruncate to the guest size", vm, "exits",
                               "QEMU cannot create guest RAM and exits")))
    else:
        path = f"{t.mount}/{vm}"
        ph.start += [
            ("create", {"file": path, "size": n, "proc": vm},
             _note(t, "start", "memory-backend-file: mkstemp in mem-path, ftruncate to the "
                   "guest size", vm, "exits", "QEMU cannot create guest RAM and exits")),
            ("unlink", {"file": path},
             _note(t, "start", "QEMU unlinks the temporary file at once", vm)),
        ]
    flags = ("MAP_SHARED" if share else "MAP_PRIVATE") + ("" if p["reserve"]
                                                          else "|MAP_NORESERVE")
    ph.start.append(("mmap", {"proc": vm, "map": ram, "file": path, "length": n,
                              "shared": share, "noreserve": not p["reserve"]},
                     _note(t, "start", f"QEMU maps guest RAM ({n} pages, {flags})", vm, "exits",
                           "mmap fails: QEMU reports it cannot allocate guest RAM and exits")))
    if p["prealloc"]:
        ph.start.append(("touch", {"proc": vm, "map": ram, "page": 0, "count": n},
                         _note(t, "start", "prealloc=on: QEMU populates every page", vm,
                               "exits", "preallocation fails: QEMU reports it and exits "
                               "before the guest runs")))
    used = min(n, t.pages(p["in_use"].of(p["memory"])))
    if used:
        ph.use.append(("touch", {"proc": vm, "map": ram, "page": 0, "count": used},
                       _note(t, "use", f"the guest touches {used} pages of its RAM", vm,
                             "killed", f"QEMU ({vm}) dies with SIGBUS: the guest is lost")))
    ph.stop += [("exit", {"proc": vm}, _note(t, "stop", "QEMU exits", vm)),
                ("close", {"file": path}, _note(t, "stop", "its guest RAM file goes", vm))]
    return ph


# -- DPDK ---------------------------------------------------------------------------------------

def dpdk(t: Target, p: dict[str, Any]) -> Phases:
    """EAL dynamic memory (eal_memalloc.c alloc_seg): per page, either its own hugetlbfs file
    (open, ftruncate to one page, MAP_SHARED|MAP_POPULATE, a write under a SIGBUS guard), one
    file per segment list grown with fallocate (single-file segments) and shrunk with
    PUNCH_HOLE, or memfds (in-memory mode); ``--huge-unlink`` unlinks each file before mapping
    it.  A failed page makes rte_eal_init fail and the application exit."""
    n = t.pages(p["memory"])
    app, mode, ph = t.name, p["mode"], Phases()
    fail = "EAL cannot allocate -m memory: rte_eal_init fails and the application exits"
    ph.start.append(("spawn", {"proc": app, "cgroup": t.cgroup},
                     _note(t, "start", "the DPDK application starts (EAL init)", app)))
    release = min(n, t.pages(p["release"])) if p["release"] else 0
    if mode == "single-file":
        path, seg = f"{t.mount}/{app}-map_0", f"{app}-seg"
        ph.start += [
            ("create", {"file": path, "proc": app},
             _note(t, "start", "EAL opens the segment list's file (single-file segments)",
                   app, "exits", fail)),
            ("fallocate", {"file": path, "offset": 0, "length": n, "proc": app},
             _note(t, "start", f"EAL grows the file with fallocate, one page at a time "
                   f"({n} pages)", app, "exits", fail)),
            ("mmap", {"proc": app, "map": seg, "file": path, "length": n, "populate": True},
             _note(t, "start", "EAL maps each page MAP_SHARED|MAP_POPULATE", app, "exits",
                   fail)),
            ("touch", {"proc": app, "map": seg, "page": 0, "count": n},
             _note(t, "start", "EAL writes each page under its SIGBUS guard", app, "exits",
                   fail)),
        ]
        if release:
            ph.use += [
                ("munmap", {"proc": app, "map": seg, "offset": n - release, "length": release},
                 _note(t, "use", f"rte_free gives back {release} pages: EAL unmaps them", app)),
                ("punch", {"file": path, "offset": n - release, "length": release,
                           "proc": app},
                 _note(t, "use", "and punches them out of the file (FALLOC_FL_PUNCH_HOLE)",
                       app)),
            ]
        ph.stop += [("exit", {"proc": app}, _note(t, "stop", "the application exits", app)),
                    ("close", {"file": path},
                     _note(t, "stop", "the file stays in the hugetlbfs directory with its "
                           "pages until the next EAL start clears it", app))]
        return ph
    files = []
    for i in range(n):
        seg = f"{app}-seg{i}"
        if mode == "in-memory":
            path = f"memfd:{app}-seg{i}"
            ph.start.append(("memfd", {"file": path, "size": 1, "proc": app},
                             _note(t, "start", f"EAL creates page {i}'s memfd", app, "exits",
                                   fail)))
        else:
            path = f"{t.mount}/{app}-rtemap_{i}"
            ph.start.append(("create", {"file": path, "size": 1, "proc": app},
                             _note(t, "start", f"EAL creates rtemap_{i} and ftruncates it to "
                                   "one page", app, "exits", fail)))
            if p["huge_unlink"]:
                ph.start.append(("unlink", {"file": path},
                                 _note(t, "start", "--huge-unlink: EAL unlinks it before "
                                       "mapping", app)))
        ph.start += [
            ("mmap", {"proc": app, "map": seg, "file": path, "length": 1, "populate": True},
             _note(t, "start", f"EAL maps page {i} MAP_SHARED|MAP_POPULATE", app, "exits",
                   fail)),
            ("touch", {"proc": app, "map": seg, "page": 0},
             _note(t, "start", f"EAL writes page {i} under its SIGBUS guard", app, "exits",
                   fail)),
        ]
        files.append((seg, path))
    for seg, path in files[n - release:] if release else []:
        ph.use.append(("munmap", {"proc": app, "map": seg},
                       _note(t, "use", "rte_free gives a page back: EAL unmaps it", app)))
        if mode == "file-per-page" and not p["huge_unlink"]:
            ph.use.append(("unlink", {"file": path},
                           _note(t, "use", "and removes its file", app)))
        ph.use.append(("close", {"file": path}, _note(t, "use", "and closes it", app)))
    ph.stop.append(("exit", {"proc": app}, _note(t, "stop", "the application exits", app)))
    for _, path in files[:n - release]:
        kept = mode == "file-per-page" and not p["huge_unlink"]
        ph.stop.append(("close", {"file": path},
                        _note(t, "stop", "its rtemap file stays with its page until the next "
                              "EAL start clears the directory" if kept else
                              "its page goes with the last reference", app)))
    return ph


# -- JVM ----------------------------------------------------------------------------------------

def jvm(t: Target, p: dict[str, Any]) -> Phases:
    """HotSpot -XX:+UseLargePages with hugetlbfs pages: the heap is private anonymous
    MAP_HUGETLB memory; JDK 17 and later map the whole -Xmx at start (``commit: upfront``),
    older JDKs map each committed part as the heap grows (``commit: grow``).  A refused mmap
    makes the JVM warn and use small pages; a SIGBUS in the heap kills it."""
    heap = t.pages(p["heap"])
    initial = min(heap, t.pages(p["initial"] if p["initial"] is not None else p["heap"]))
    used = min(heap, t.pages(p["used"].of(p["heap"])))
    java, ph = t.name, Phases()
    fb = ("the JVM warns (failed to reserve/commit large pages memory) and uses small pages "
          "for the heap")
    dies = f"the JVM ({java}) dies with SIGBUS"
    ph.start.append(("spawn", {"proc": java, "cgroup": t.cgroup},
                     _note(t, "start", "the JVM starts", java)))
    first = heap if p["commit"] == "upfront" else initial
    ph.start.append(("mmap", {"proc": java, "map": f"{java}-heap", "anon": True,
                              "shared": False, "length": first},
                     _note(t, "start", f"the JVM maps the heap ({first} pages, private "
                           "anonymous MAP_HUGETLB)", java, "falls-back", fb)))
    if p["pretouch"] and initial:
        ph.start.append(("touch", {"proc": java, "map": f"{java}-heap", "page": 0,
                                   "count": initial},
                         _note(t, "start", "AlwaysPreTouch: the JVM touches the initial heap",
                               java, "killed", dies)))
    grown = used - first if p["commit"] == "grow" and used > first else 0
    if grown:
        ph.use.append(("mmap", {"proc": java, "map": f"{java}-heap2", "anon": True,
                                "shared": False, "length": grown},
                       _note(t, "use", f"the heap grows: the JVM commits {grown} more pages",
                             java, "falls-back", fb)))
    touched = min(used, first)
    if touched:
        ph.use.append(("touch", {"proc": java, "map": f"{java}-heap", "page": 0,
                                 "count": touched},
                       _note(t, "use", f"the application fills {touched} pages of heap",
                             java, "killed", dies)))
    if grown:
        ph.use.append(("touch", {"proc": java, "map": f"{java}-heap2", "page": 0,
                                 "count": grown},
                       _note(t, "use", f"and {grown} pages of the grown heap", java, "killed",
                             dies)))
    ph.stop.append(("exit", {"proc": java}, _note(t, "stop", "the JVM exits", java)))
    return ph


_PCT = "a size or a percentage"
PROGRAMS: dict[str, Recipe] = {
    "postgres": Recipe(
        "postgres", "PostgreSQL with huge_pages=on|try",
        {"shared_memory": Param("size", None, doc="shared_memory_size (postgres -C "
                                "shared_memory_size)"),
         "shared_buffers": Param("size", None, doc="shared_buffers (used when shared_memory "
                                 "is not given, and to size the buffer part)"),
         "huge_pages": Param("choice", "try", choices=("on", "try")),
         "startup": Param("amount", None, doc=f"faulted by the postmaster at start ({_PCT} of "
                          "shared memory; default: everything but the buffers)"),
         "in_use": Param("amount", Amount(percent=100.0), doc=f"shared buffers in use ({_PCT})"),
         "backends": Param("count", 2, doc="client backends")},
        postgres,
        confirmed="PostgreSQL 15 on Linux 6.18 (tests/workloads/test_real_programs.py)"),
    "qemu": Recipe(
        "qemu", "QEMU guest RAM from memory-backend-file / memory-backend-memfd",
        {"memory": Param("size", required=True, doc="guest RAM (-m, the backend's size)"),
         "backend": Param("choice", "file", choices=("file", "memfd")),
         "share": Param("bool", None, doc="share=on|off (default: off for file, on for memfd)"),
         "reserve": Param("bool", True, doc="reserve=off adds MAP_NORESERVE"),
         "prealloc": Param("bool", False),
         "in_use": Param("amount", Amount(percent=100.0), doc=f"guest RAM touched ({_PCT})")},
        qemu, uses_mount=lambda p: p["backend"] == "file",
        confirmed="QEMU 7.2 (TCG, -S) on Linux 6.18 (tests/workloads/test_real_programs.py)"),
    "dpdk": Recipe(
        "dpdk", "DPDK EAL dynamic memory",
        {"memory": Param("size", required=True, doc="-m"),
         "mode": Param("choice", "file-per-page",
                       choices=("file-per-page", "single-file", "in-memory")),
         "huge_unlink": Param("bool", False),
         "release": Param("size", 0, doc="memory freed back at run time (rte_free)")},
        dpdk, uses_mount=lambda p: p["mode"] != "in-memory"),
    "jvm": Recipe(
        "jvm", "HotSpot JVM with -XX:+UseLargePages (hugetlbfs)",
        {"heap": Param("size", required=True, doc="-Xmx"),
         "initial": Param("size", None, doc="-Xms (default: -Xmx)"),
         "used": Param("amount", Amount(percent=100.0), doc=f"heap in use ({_PCT} of -Xmx)"),
         "commit": Param("choice", "upfront", choices=("upfront", "grow")),
         "pretouch": Param("bool", False, doc="-XX:+AlwaysPreTouch")},
        jvm),
}
"""Every program a composition may name."""
