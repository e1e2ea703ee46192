"""The kernel backend's hugetlb cgroups: a private cgroup v1 hierarchy, or a private subtree of
the machine's cgroup2 hierarchy (``cgroups: v2``), behind one interface.

The hugetlb controller is bound to one hierarchy at a time.  A v1 hierarchy unmounted while
its removed cgroups are still being released stays alive with no mount, and the controller
then never returns to cgroup2 by itself (measured on 6.18: cgroup_kill_sb only kills a root
without children).  So a v1 session waits for its removed cgroups to be released before it
unmounts, and waits for the controller to come back to cgroup2 after; a hierarchy found bound
with no mount is a leftover, destroyed by mounting and unmounting it once.  Under v2, a
cgroup whose controller was disabled stays "dying" until released, and a v1 mount meanwhile
is EBUSY (rebind_subsystems): a v2 session waits for ``nr_dying_subsys_hugetlb`` to drop.

Under v2 the scenario's ``root`` is ``<cgroup2>/hugetlbsim-<run>``; it distributes hugetlb to
its children, so its processes live in a hidden leaf, ``<root>/.procs``.  Any other cgroup
gets hugetlb in its ``subtree_control`` when its first child is created (EBUSY while it holds
a process: the kernel's no-internal-process rule) and loses it when its last child is removed.
An ancestor's ``subtree_control`` is changed only if hugetlb is missing there, recorded in
the run record first, and put back by `cleanup_v2`.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from hugetlbsim.backends import kernel_sys as ks

if TYPE_CHECKING:
    from hugetlbsim.backends.kernel_cleanup import RunRecord

__all__ = [
    "CG_FILE",
    "HIDDEN_LEAF",
    "LIMIT_MAX",
    "MEMCG_OPTION",
    "Hierarchy",
    "OptionRefused",
    "V1Hierarchy",
    "V2Hierarchy",
    "cgroup2_mount",
    "cleanup_v2",
    "ensure_on_cgroup2",
    "hugetlb_hierarchy",
    "memory_hugetlb",
    "v1_mount_with_retry",
    "wait_v1_released",
]

CG_FILE = "hugetlb.2MB."
HP = ks.PAGE_2M
HIDDEN_LEAF = ".procs"
"""The v2 root's leaf for its processes (a name no scenario cgroup can have)."""
LIMIT_MAX = (1 << 63) - HP
"""The lowest value an unlimited 2 MB limit reads back as (PAGE_COUNTER_MAX rounded down to a
huge page); a fresh cgroup reads 2^63 - 4096, and v2 prints a written ``max`` as ``max``."""
MEMCG_OPTION = "memory_hugetlb_accounting"
"""The cgroup2 mount option that charges hugetlb pages to the memory controller (6.7+)."""
WAIT = 10.0
"""Seconds to wait for the kernel to release removed cgroups (measured: tens of ms)."""

_V1_COUNTERS = (
    ("usage", "usage_in_bytes", HP), ("rsvd", "rsvd.usage_in_bytes", HP),
    ("max_usage", "max_usage_in_bytes", HP), ("rsvd_max_usage", "rsvd.max_usage_in_bytes", HP),
    ("failcnt", "failcnt", 1), ("rsvd_failcnt", "rsvd.failcnt", 1),
)


class OptionRefused(RuntimeError):
    """The kernel refuses a cgroup2 mount option the scenario needs."""


def _poll(done: object, timeout: float = WAIT) -> bool:
    """Call ``done()`` every 20 ms until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if done():  # type: ignore[operator]
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def hugetlb_hierarchy() -> tuple[int, int]:
    """(hierarchy id, number of cgroups) of the hugetlb controller in /proc/cgroups; id 0 is
    cgroup2."""
    for line in (_read("/proc/cgroups") or "").splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[0] == "hugetlb":
            return int(fields[1]), int(fields[2])
    return 0, 0


def cgroup2_mount() -> str | None:
    """The mount point of the machine's cgroup2 hierarchy (from /proc/self/mountinfo)."""
    for point, fstype in ks.mount_points().items():
        if fstype == "cgroup2":
            return point
    return None


def _v1_hugetlb_mounts() -> list[str]:
    """Mount points of v1 hierarchies with the hugetlb controller."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup" and "hugetlb" in fields[sep + 3].split(","):
                out.append(fields[4].encode().decode("unicode_escape"))
    return out


def _dying_v2() -> int:
    """``nr_dying_subsys_hugetlb`` of the cgroup2 root (0 if not shown)."""
    root = cgroup2_mount()
    text = _read(os.path.join(root, "cgroup.stat")) if root else None
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == "nr_dying_subsys_hugetlb":
            return int(value)
    return 0


def ensure_on_cgroup2(scratch: str) -> str | None:
    """Bring the hugetlb controller back to cgroup2 if a leftover v1 hierarchy (bound, not
    mounted anywhere) holds it: mount it once at ``scratch`` and unmount it.  Returns why the
    controller is still not on cgroup2, or None."""
    hierarchy, _ = hugetlb_hierarchy()
    if hierarchy == 0:
        return None
    if _v1_hugetlb_mounts():
        return ("the hugetlb controller is bound to a cgroup v1 hierarchy mounted at "
                + ", ".join(_v1_hugetlb_mounts()))
    os.makedirs(scratch, exist_ok=True)
    try:
        r = ks.mount("cgroup", scratch, "hugetlb")
        if r != "ok":
            return f"cannot mount the leftover cgroup v1 hugetlb hierarchy: {r}"
        wait_v1_released(scratch)
        r = ks.umount_retrying(scratch)
        if r != "ok":
            return f"cannot unmount the leftover cgroup v1 hugetlb hierarchy: {r}"
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(scratch)
    if not _poll(lambda: hugetlb_hierarchy()[0] == 0):
        return ("the hugetlb controller did not return to cgroup2 after its leftover v1 "
                f"hierarchy was unmounted (hierarchy {hugetlb_hierarchy()[0]})")
    return None


def wait_v1_released(point: str) -> bool:
    """Wait until the v1 hierarchy mounted at ``point`` counts no removed cgroup still being
    released (/proc/cgroups' num_cgroups equals the directories that are there)."""
    def settled() -> bool:
        live = sum(1 for _ in os.walk(point))
        return hugetlb_hierarchy()[1] <= live
    return _poll(settled)


def v1_mount_with_retry(point: str) -> str:
    """Mount the v1 hugetlb hierarchy; while cgroup2 still releases hugetlb cgroups of a v2
    session (rebind_subsystems refuses, EBUSY), wait for them, up to 10 s (measured on 6.1
    guests, which show no ``nr_dying_subsys_hugetlb``: a v1 scenario right after v2 ones)."""
    r = ks.mount("cgroup", point, "hugetlb")
    deadline = time.monotonic() + 10
    while r == "EBUSY" and time.monotonic() < deadline:
        if _dying_v2():
            _poll(lambda: _dying_v2() == 0)
        else:  # kernels before 6.11 do not count dying subsystems: try the mount again
            time.sleep(0.05)
        r = ks.mount("cgroup", point, "hugetlb")
    return r


def after_v1_umount() -> str | None:
    """After the last mount of our v1 hierarchy went: wait until hugetlb is back on cgroup2
    (unless another v1 mount of it exists); why not, or None."""
    if _v1_hugetlb_mounts():
        return None
    if _poll(lambda: hugetlb_hierarchy()[0] == 0):
        return None
    return (f"the hugetlb controller stays bound to v1 hierarchy {hugetlb_hierarchy()[0]} "
            "after its last unmount")


class Hierarchy:
    """Where the scenario's cgroups live and how their files are spelled."""

    interface = "v1"

    def __init__(self, rec: RunRecord) -> None:
        self.rec = rec

    def path(self, name: str) -> str:
        """The directory of scenario cgroup ``name`` (``root`` is the scenario's root)."""
        raise NotImplementedError

    def procs(self, name: str) -> str:
        """The ``cgroup.procs`` a process of cgroup ``name`` is written to."""
        return os.path.join(self.path(name), "cgroup.procs")

    def setup(self) -> None:
        """Create the scenario's root (raise `OSError`/`RuntimeError` with the reason)."""
        raise NotImplementedError

    def mkdir(self, name: str) -> str:
        """Create cgroup ``name``: ``ok`` or the kernel's errno name."""
        raise NotImplementedError

    def rmdir(self, name: str) -> str:
        try:
            os.rmdir(self.path(name))
        except OSError as e:
            return ks.errname(e.errno or 0)
        return "ok"

    def write_limit(self, name: str, key: str, value: int | str) -> str:
        """Write ``limit`` or ``rsvd_limit`` (pages, or ``max``)."""
        raise NotImplementedError

    def read(self, name: str) -> dict[str, int | None]:
        """The cgroup's counters for the trace state (FileNotFoundError if it is gone)."""
        raise NotImplementedError


class V1Hierarchy(Hierarchy):
    """A private mount of the cgroup v1 hugetlb hierarchy at ``<rundir>/cg``; the scenario's
    root is its child ``hugetlbsim-<run>`` (the hierarchy's root is machine-global)."""

    interface = "v1"

    def _rel(self, name: str) -> str:
        return self.rec.cg_root if name == "root" else f"{self.rec.cg_root}/{name}"

    def path(self, name: str) -> str:
        return os.path.join(self.rec.cg_dir, self._rel(name))

    def setup(self) -> None:
        # A leftover hierarchy (bound, unmounted) is simply mounted again here, and destroyed
        # at this session's unmount.
        rec = self.rec
        rec.cg_mount = True
        rec.save()
        os.mkdir(rec.cg_dir)
        r = v1_mount_with_retry(rec.cg_dir)
        if r != "ok":
            rec.cg_mount = False
            rec.save()
            os.rmdir(rec.cg_dir)
            raise RuntimeError(f"cannot mount the cgroup v1 hugetlb hierarchy: {r}")
        rec.note("cgroups", rec.cg_root)
        os.mkdir(self.path("root"))

    def mkdir(self, name: str) -> str:
        self.rec.note("cgroups", self._rel(name))
        try:
            os.mkdir(self.path(name))
        except OSError as e:
            return ks.errname(e.errno or 0)
        return "ok"

    def write_limit(self, name: str, key: str, value: int | str) -> str:
        fname = "limit_in_bytes" if key == "limit" else "rsvd.limit_in_bytes"
        raw = "-1" if value == "max" or int(value) < 0 else str(int(value) * HP)
        return ks.write_str(os.path.join(self.path(name), CG_FILE + fname), raw)

    def read(self, name: str) -> dict[str, int | None]:
        base = os.path.join(self.path(name), CG_FILE)
        values: dict[str, int | None] = {
            key: ks.read_int(base + fname) // unit for key, fname, unit in _V1_COUNTERS}
        for key, fname in (("limit", "limit_in_bytes"), ("rsvd_limit", "rsvd.limit_in_bytes")):
            raw = ks.read_int(base + fname)
            values[key] = None if raw >= LIMIT_MAX else raw // HP
        return values


class V2Hierarchy(Hierarchy):
    """A private subtree ``<cgroup2>/hugetlbsim-<run>`` of the machine's cgroup2 hierarchy.

    With ``memory`` (``memory_accounting`` scenarios, run only where the machine is disposable:
    a vm guest) cgroup2 is remounted with ``memory_hugetlb_accounting`` and the memory
    controller is distributed beside hugetlb, so that each cgroup's ``memory.stat`` shows the
    hugetlb pages charged to it."""

    interface = "v2"

    def __init__(self, rec: RunRecord, memory: bool = False) -> None:
        super().__init__(rec)
        self.controllers = ("hugetlb", "memory") if memory else ("hugetlb",)
        """What the subtree's ``subtree_control`` files distribute."""
        self._kids: dict[str, int] = {"root": 0}
        """Live children of each scenario cgroup (hugetlb is in its subtree_control while >0)."""

    @property
    def top(self) -> str:
        assert self.rec.cg2_dir is not None
        return self.rec.cg2_dir

    def path(self, name: str) -> str:
        return self.top if name == "root" else os.path.join(self.top, name)

    def procs(self, name: str) -> str:
        leaf = os.path.join(self.top, HIDDEN_LEAF) if name == "root" else self.path(name)
        return os.path.join(leaf, "cgroup.procs")

    def setup(self) -> None:
        rec = self.rec
        mount = cgroup2_mount()
        if mount is None:
            raise RuntimeError("no cgroup2 hierarchy is mounted (/proc/self/mountinfo)")
        problem = ensure_on_cgroup2(os.path.join(rec.rundir, "leftover"))
        if problem is not None:
            raise RuntimeError(problem)
        controllers = (_read(os.path.join(mount, "cgroup.controllers")) or "").split()
        for controller in self.controllers:
            if controller not in controllers:
                raise RuntimeError(f"the {controller} controller is not available in {mount}")
        if "memory" in self.controllers:
            self._accounting_on(mount)
        rec.cg2_dir = os.path.join(mount, rec.cg_root)
        rec.save()
        self._enable(mount, outside=True)
        os.mkdir(self.top)
        self._enable(self.top, outside=False)
        os.mkdir(os.path.join(self.top, HIDDEN_LEAF))

    def _accounting_on(self, mount: str) -> None:
        """Remount cgroup2 with memory_hugetlb_accounting (recorded first), keeping its other
        options; a kernel without the option (before 6.7) refuses it: EINVAL, "cgroup2:
        Unknown parameter"."""
        options = ks.mount_options(mount)
        kept = [o for o in (options[1] if options else []) if o not in ("rw", "ro")]
        if MEMCG_OPTION in kept:
            return
        self.rec.cg2_remounted = mount
        self.rec.save()
        r = ks.remount(mount, ",".join([*kept, MEMCG_OPTION]))
        if r != "ok":
            self.rec.cg2_remounted = None
            self.rec.save()
            raise OptionRefused(
                f"kernel {os.uname().release} refuses cgroup2's {MEMCG_OPTION} mount option "
                f"({r}; the option came in 6.7, commit 8cba9576df60): memory_accounting "
                "cannot run on it")

    def _enable(self, directory: str, outside: bool) -> str:
        """Put the controllers in ``directory``'s subtree_control where missing; a directory
        outside our subtree is recorded first, so that cleanup puts it back."""
        control = os.path.join(directory, "cgroup.subtree_control")
        there = (_read(control) or "").split()
        missing = [c for c in self.controllers if c not in there]
        if not missing:
            return "ok"
        if outside:
            for controller in missing:
                self.rec.note("subtree_enabled" if controller == "hugetlb" else
                              "memory_enabled", directory)
        r = ks.write_str(control, " ".join("+" + c for c in missing))
        if outside and r != "ok":
            raise RuntimeError(f"cannot enable {' and '.join(missing)} in {control}: {r}")
        return r

    def _disable(self, name: str) -> str:
        """Take the controllers out of a scenario cgroup's subtree_control (no child left)."""
        return ks.write_str(os.path.join(self.path(name), "cgroup.subtree_control"),
                            " ".join("-" + c for c in self.controllers))

    def mkdir(self, name: str) -> str:
        parent = name.rpartition("/")[0] or "root"
        if parent not in self._kids:
            return "ENOENT"
        if parent != "root" and self._kids[parent] == 0:
            r = self._enable(self.path(parent), outside=False)
            if r != "ok":
                return r  # EBUSY: the parent holds processes
        try:
            os.mkdir(self.path(name))
        except OSError as e:
            if parent != "root" and self._kids[parent] == 0:
                self._disable(parent)
            return ks.errname(e.errno or 0)
        self._kids[parent] += 1
        self._kids[name] = 0
        return "ok"

    def rmdir(self, name: str) -> str:
        r = super().rmdir(name)
        if r != "ok":
            return r
        parent = name.rpartition("/")[0] or "root"
        del self._kids[name]
        self._kids[parent] -= 1
        if parent != "root" and self._kids[parent] == 0:
            return self._disable(parent)
        return "ok"

    def write_limit(self, name: str, key: str, value: int | str) -> str:
        fname = "max" if key == "limit" else "rsvd.max"
        raw = "max" if value == "max" or int(value) < 0 else str(int(value) * HP)
        return ks.write_str(os.path.join(self.path(name), CG_FILE + fname), raw)

    def read(self, name: str) -> dict[str, int | None]:
        base = os.path.join(self.path(name), CG_FILE)
        values: dict[str, int | None] = {
            "usage": ks.read_int(base + "current") // HP,
            "rsvd": ks.read_int(base + "rsvd.current") // HP}
        for key, fname in (("limit", "max"), ("rsvd_limit", "rsvd.max")):
            with open(base + fname) as f:
                raw = f.read().strip()
            values[key] = None if raw == "max" or int(raw) >= LIMIT_MAX else int(raw) // HP
        values["events"] = _events(base + "events")
        if name != "root":
            values["events_local"] = _events(base + "events.local")
        if "memory" in self.controllers:
            values["memory"] = memory_hugetlb(self.path(name))
        return values


MEMCG_STOCK = 64 * 4096
"""The most a CPU's memcg charge stock holds (MEMCG_CHARGE_BATCH base pages): charged to
memory.current, shown in no memory.stat line."""


MEMORY_READS = 25
"""Readings of memory.current and memory.stat before an inexact figure is an error."""
MEMORY_PAUSE = 0.02
"""Seconds between two readings."""


def memory_hugetlb(directory: str) -> int:
    """Huge pages charged to the memory cgroup at ``directory`` (hierarchical, as memory.stat).

    6.14 and later show them as memory.stat's ``hugetlb`` line.  6.7 to 6.13 charge them to
    memory.current but show them in no memory.stat line, so the figure is memory.current
    less anon, file, kernel and sock (every other charge), in whole huge pages: what is left
    beyond them is the per-CPU charge stock, under 2 MB while a CPU's stock holds 256 KB.
    Reading cpu.stat first flushes the subtree's statistics (``cgroup_rstat_flush``), so
    memory.stat is exact, not up to a batch stale.  The workers' own memory still moves for a
    moment after a step (exit's deferred frees, pages unmapped but not yet freed, counted in
    memory.current and in no ``anon``): measured on 6.12.117 in 24 of 1 800 fuzzed scenarios,
    remainders of -8 192 to 565 248 bytes beyond whole pages.  So the pair is read again, up
    to `MEMORY_READS` times, until the remainder is a charge stock at most.
    """
    seen: list[int] = []
    for attempt in range(MEMORY_READS):
        if attempt:
            time.sleep(MEMORY_PAUSE)
        _read(os.path.join(directory, "cpu.stat"))
        stat: dict[str, int] = {}
        for line in (_read(os.path.join(directory, "memory.stat")) or "").splitlines():
            key, _, value = line.partition(" ")
            stat[key] = int(value)
        if "hugetlb" in stat:
            return stat["hugetlb"] // HP
        rest = ks.read_int(os.path.join(directory, "memory.current")) - sum(
            stat[k] for k in ("anon", "file", "kernel", "sock"))
        cpus = os.cpu_count() or 1
        if rest >= 0 and rest % HP <= cpus * MEMCG_STOCK:
            return rest // HP
        seen.append(rest)
    raise RuntimeError(f"{directory}: memory.current less anon, file, kernel and sock was "
                       f"{', '.join(map(str, seen))} bytes in {len(seen)} readings, never "
                       f"whole huge pages plus at most {cpus} CPU charge stocks: the hugetlb "
                       "charge cannot be read exactly")


def _events(path: str) -> int:
    """The ``max`` line of an events file."""
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key == "max":
                return int(value)
    return 0


def cleanup_v2(rec: RunRecord, problems: list[str]) -> None:
    """Remove the run's cgroup2 subtree (children first) and put back every ancestor's
    subtree_control it changed; then wait until the removed hugetlb cgroups are released, so
    that a v1 session can take the controller."""
    if rec.cg2_dir is not None and os.path.isdir(rec.cg2_dir):
        for dirpath, _, _ in os.walk(rec.cg2_dir, topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError as e:
                problems.append(f"rmdir {dirpath}: {ks.errname(e.errno or 0)}")
                return  # the ancestors keep hugetlb until the next session's retry
    for controller, dirs in (("memory", rec.memory_enabled), ("hugetlb", rec.subtree_enabled)):
        for directory in reversed(dirs):
            control = os.path.join(directory, "cgroup.subtree_control")
            if controller in (_read(control) or "").split():
                r = ks.write_str(control, "-" + controller)
                if r != "ok":
                    problems.append(f"write -{controller} to {control}: {r}")
    if rec.cg2_remounted is not None and not problems:
        options = ks.mount_options(rec.cg2_remounted)
        kept = [o for o in (options[1] if options else []) if o not in ("rw", "ro", MEMCG_OPTION)]
        r = ks.remount(rec.cg2_remounted, ",".join(kept))
        if r != "ok":
            problems.append(f"remount {rec.cg2_remounted} without {MEMCG_OPTION}: {r}")
    if not problems:
        _poll(lambda: _dying_v2() == 0)
