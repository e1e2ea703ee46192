"""The run record of a kernel session, and the cleanup that undoes everything it lists.

HugeTLB state is machine-global and survives a crashed run (measured): hugetlbfs
files keep their pages and reservations, SysV segments persist, a ``min_size=`` mount keeps its
reservation, and cgroup directories stay in the one hugetlb hierarchy.  So every session keeps a
JSON record in its private run directory ``/tmp/hugetlbsim-<pid>-<random>/`` and writes each
thing there *before* creating it.  The same `cleanup` runs at the end of a session and, at the
start of the next one, for every run directory whose owner is dead.  It touches only what the
record names: processes whose pid *and* start time match, SysV segments created by those
processes, mounts and cgroups under the run directory.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from dataclasses import asdict, dataclass, field

from hugetlbsim.backends import kernel_sys as ks
from hugetlbsim.backends.kernel_cgroup import after_v1_umount, cleanup_v2, wait_v1_released

__all__ = [
    "NR_HUGEPAGES",
    "NR_OVERCOMMIT",
    "PREFIX",
    "STATE_FILE",
    "RunRecord",
    "clean_leftovers",
    "cleanup"
]

PREFIX = "hugetlbsim-"
STATE_FILE = "state.json"
NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"
NR_OVERCOMMIT = "/proc/sys/vm/nr_overcommit_hugepages"


@dataclass
class RunRecord:
    """What one kernel session has created (or is about to create), kept on disk."""

    rundir: str
    owner_pid: int
    owner_start: int | None
    orig_nr_hugepages: int | None = None
    orig_overcommit: int | None = None
    cg_mount: bool = False
    """The private cgroup v1 hugetlb hierarchy is (about to be) mounted at ``<rundir>/cg``."""
    cgroups: list[str] = field(default_factory=list)
    """Cgroup directories relative to ``<rundir>/cg``, parents before children."""
    cg2_dir: str | None = None
    """The scenario's root in the machine's cgroup2 hierarchy (``cgroups: v2``)."""
    subtree_enabled: list[str] = field(default_factory=list)
    """cgroup2 directories outside ours whose subtree_control gained ``hugetlb`` (recorded
    before the write); cleanup takes it out again."""
    memory_enabled: list[str] = field(default_factory=list)
    """The same for ``memory`` (``memory_accounting`` scenarios)."""
    cg2_remounted: str | None = None
    """The cgroup2 mount point remounted with ``memory_hugetlb_accounting`` (recorded before
    the remount); cleanup remounts it without."""
    mounts: list[str] = field(default_factory=list)
    """hugetlbfs mount points."""
    shm: list[int] = field(default_factory=list)
    workers: list[list[int | None]] = field(default_factory=list)
    """[pid, start time] of every worker process."""

    @property
    def cg_dir(self) -> str:
        """Where the private hugetlb hierarchy is mounted."""
        return os.path.join(self.rundir, "cg")

    @property
    def cg_root(self) -> str:
        """The scenario's ``root`` cgroup, relative to `cg_dir` (the hierarchy root is global)."""
        return "hugetlbsim-" + os.path.basename(self.rundir)[len(PREFIX):]

    def save(self) -> None:
        """Write the record atomically."""
        path = os.path.join(self.rundir, STATE_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(asdict(self), f)
        os.replace(path + ".tmp", path)

    def note(self, kind: str, item: object) -> None:
        """Add one item to a list field and save, before the item is created."""
        items: list[object] = getattr(self, kind)
        if item not in items:
            items.append(item)
            self.save()

    @classmethod
    def load(cls, rundir: str) -> RunRecord:
        """Read the record of a run directory."""
        with open(os.path.join(rundir, STATE_FILE)) as f:
            return cls(**json.load(f))


def _shm_segments() -> list[tuple[int, int, int]]:
    """(key, shmid, cpid) of every SysV segment."""
    with open("/proc/sysvipc/shm") as f:
        lines = f.read().splitlines()[1:]
    return [(int(p[0]), int(p[1]), int(p[4])) for p in (line.split() for line in lines)]


def _kill_workers(rec: RunRecord, problems: list[str]) -> None:
    for pid, start in rec.workers:
        if pid is None or start is None or ks.start_time(pid) != start:
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if ks.start_time(pid) == start and not ks.kill_and_wait(pidfd):
                problems.append(f"worker {pid} does not die")
        finally:
            os.close(pidfd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _remove_shm(rec: RunRecord, problems: list[str]) -> None:
    workers = {pid for pid, _ in rec.workers}
    for key, shmid, cpid in _shm_segments():
        if cpid in workers and (shmid in rec.shm or key == ks.IPC_PRIVATE):
            r = ks.shm_rmid(shmid)
            if r != "ok":
                problems.append(f"shmctl({shmid}, IPC_RMID): {r}")


def _remove_mounts(rec: RunRecord, problems: list[str]) -> None:
    for mnt in rec.mounts:
        # A mount that refused to go may have been mounted over: unmount every layer.
        while ks.mount_points().get(mnt) == "hugetlbfs":
            for entry in os.scandir(mnt):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            r = ks.umount_retrying(mnt)
            if r != "ok":
                problems.append(f"umount {mnt}: {r}")
                break
        else:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(mnt)


def _remove_cgroups(rec: RunRecord, problems: list[str]) -> None:
    cleanup_v2(rec, problems)
    if not rec.cg_mount:
        return
    cg = rec.cg_dir
    if ks.mount_points().get(cg) != "cgroup":
        # The hierarchy outlives its mounts while it has child cgroups: remount to see them.
        os.makedirs(cg, exist_ok=True)
        r = ks.mount("cgroup", cg, "hugetlb")
        if r != "ok":
            problems.append(f"mount the hugetlb hierarchy at {cg}: {r}")
            return
    top = os.path.join(cg, rec.cg_root)
    for dirpath, _, _ in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError as e:
            problems.append(f"rmdir {dirpath}: {ks.errname(e.errno or 0)}")
    # Unmounted while a removed cgroup is still being released, the hierarchy would live on
    # unmounted and keep the hugetlb controller from cgroup2 for good.
    if not wait_v1_released(cg):
        problems.append(f"the removed cgroups of {cg} are not released")
        return
    r = ks.umount_retrying(cg)
    if r != "ok":
        problems.append(f"umount {cg}: {r}")
        return
    os.rmdir(cg)
    late = after_v1_umount()
    if late is not None:
        problems.append(late)


def _restore_pool(rec: RunRecord, problems: list[str]) -> None:
    for path, value in ((NR_HUGEPAGES, rec.orig_nr_hugepages),
                        (NR_OVERCOMMIT, rec.orig_overcommit)):
        if value is not None:
            r = ks.write_str(path, str(value))
            if r != "ok":
                problems.append(f"write {value} to {path}: {r}")


def cleanup(rec: RunRecord) -> list[str]:
    """Undo everything the record lists; return what could not be undone (empty if clean).

    Order matters: dead processes drop their mappings, removed segments and unlinked files
    free their pages, only then can the mounts go and the pool shrink without leaving
    surplus pages behind.  The record and run directory stay if anything failed, so the next
    session retries.
    """
    problems: list[str] = []
    for step in (_kill_workers, _remove_shm, _remove_mounts, _remove_cgroups, _restore_pool):
        try:
            step(rec, problems)
        except OSError as e:
            problems.append(f"{step.__name__.lstrip('_')}: {e}")
    if not problems:
        for name in (STATE_FILE, STATE_FILE + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(rec.rundir, name))
        try:
            os.rmdir(rec.rundir)
        except OSError as e:
            problems.append(f"rmdir {rec.rundir}: {e}")
    return problems


def _owner_alive(pid: int, start: int | None, live: set[str], rundir: str) -> bool:
    if pid == os.getpid():
        return rundir in live
    return ks.start_time(pid) is not None and (start is None or ks.start_time(pid) == start)


def clean_leftovers(tmpdir: str, live: set[str]) -> list[str]:
    """Clean the run directories of dead sessions; return what could not be cleaned.

    `live` holds this process's open run directories, which are left alone.
    """
    problems: list[str] = []
    for rundir in sorted(glob.glob(os.path.join(tmpdir, PREFIX + "*"))):
        if not os.path.isdir(rundir) or os.path.islink(rundir):
            continue
        try:
            rec = RunRecord.load(rundir)
        except FileNotFoundError:
            # Died before its first record: the directory is empty.
            pid = os.path.basename(rundir)[len(PREFIX):].partition("-")[0]
            if pid.isdigit() and not _owner_alive(int(pid), None, live, rundir):
                try:
                    os.rmdir(rundir)
                except OSError as e:
                    problems.append(f"rmdir {rundir}: {e}")
            continue
        except (OSError, ValueError, TypeError) as e:
            problems.append(f"unreadable run record in {rundir}: {e}")
            continue
        if not _owner_alive(rec.owner_pid, rec.owner_start, live, rundir):
            problems.extend(cleanup(rec))
    return problems
