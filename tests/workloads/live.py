"""A private corner of the live machine for running real programs (kernel-marked tests).

`Live` holds the project's machine-wide lock for its whole life, records everything it
creates in a `RunRecord` before creating it (so `cleanup`, here or in a later session, undoes
it), mounts a private cgroup v1 hugetlb hierarchy and a hugetlbfs under its run directory,
sets a pool of at most 64 pages of 2 MB, and restores all of it on close, also on failure.
Counters are read relative to the pool's state when the lock was taken: this machine may carry
a reservation leaked by an earlier run (HugePages_Rsvd with no mapping), which nothing here can
free and which a private run does not change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from hugetlbsim.backends import kernel_sys as ks
from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.backends.kernel import LOCK_FILE, acquire_lock, machine_unavailable
from hugetlbsim.backends.kernel_cgroup import v1_mount_with_retry
from hugetlbsim.backends.kernel_cleanup import (
    NR_HUGEPAGES,
    NR_OVERCOMMIT,
    PREFIX,
    RunRecord,
    clean_leftovers,
    cleanup,
)

__all__ = ["MAX_PAGES", "Live", "unavailable"]

MAX_PAGES = 64
HP = 2 << 20


def unavailable() -> str | None:
    """Why the live tests cannot run here, or None."""
    return machine_unavailable()


class Live:
    """The lock, a private hugetlb cgroup ``cg`` and hugetlbfs ``mount``, a pool of ``pages``."""

    def __init__(self, pages: int, lock_timeout: float = 300.0) -> None:
        assert 0 <= pages <= MAX_PAGES
        self.lock_fd = acquire_lock(os.path.join("/tmp", LOCK_FILE), lock_timeout)
        self.rec: RunRecord | None = None
        self.data: list[str] = []
        try:
            self._setup(pages)
        except BaseException:
            self.close()
            raise

    def _setup(self, pages: int) -> None:
        problems = clean_leftovers("/tmp", set())
        if problems:
            raise BackendUnavailable("leftovers could not be cleaned: " + "; ".join(problems))
        before = ks.meminfo_hugepages()
        if before["total"] != before["free"] or ks.read_int(NR_OVERCOMMIT):
            raise BackendUnavailable(f"huge pages are in use on this machine: {before}")
        rundir = os.path.realpath(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-",
                                                   dir="/tmp"))
        rec = self.rec = RunRecord(rundir, os.getpid(), ks.start_time(os.getpid()))
        rec.orig_nr_hugepages = ks.read_int(NR_HUGEPAGES)
        rec.orig_overcommit = ks.read_int(NR_OVERCOMMIT)
        rec.cg_mount = True
        rec.save()
        os.mkdir(rec.cg_dir)
        r = v1_mount_with_retry(rec.cg_dir)  # waits out a v2 session's dying cgroups
        if r != "ok":
            rec.cg_mount = False
            rec.save()
            os.rmdir(rec.cg_dir)
            raise BackendUnavailable(f"cannot mount a private cgroup v1 hugetlb hierarchy: {r}")
        rec.note("cgroups", rec.cg_root)
        self.cg = os.path.join(rec.cg_dir, rec.cg_root)
        os.mkdir(self.cg)
        self.mount = os.path.join(rundir, "hp")
        rec.note("mounts", self.mount)
        os.mkdir(self.mount)
        r = ks.mount("hugetlbfs", self.mount, "pagesize=2M,mode=1777")
        if r != "ok":
            raise BackendUnavailable(f"cannot mount hugetlbfs: {r}")
        self.set_pool(pages)
        self.base = ks.meminfo_hugepages()

    def set_pool(self, pages: int) -> None:
        """Write nr_hugepages (at most 64)."""
        assert 0 <= pages <= MAX_PAGES
        r = ks.write_str(NR_HUGEPAGES, str(pages))
        if r != "ok" or ks.meminfo_hugepages()["total"] < pages:
            raise BackendUnavailable(f"the pool cannot grow to {pages} pages ({r})")
        self.pages = pages

    def set_limits(self, limit: int | None, rsvd_limit: int | None) -> None:
        """The cgroup's fault and reservation limits, in pages (None: unlimited)."""
        for name, value in (("limit_in_bytes", limit), ("rsvd.limit_in_bytes", rsvd_limit)):
            text = "-1" if value is None else str(value * HP)
            r = ks.write_str(os.path.join(self.cg, "hugetlb.2MB." + name), text)
            assert r == "ok", (name, r)

    def state(self) -> dict[str, Any]:
        """Pool and cgroup counters in pages, as the model's trace state holds them, with the
        leaked reservation found at the start subtracted from Rsvd."""
        mi = ks.meminfo_hugepages()

        def cg(name: str) -> int:
            return ks.read_int(os.path.join(self.cg, "hugetlb.2MB." + name)) // HP

        return {"total": mi["total"], "free": mi["free"],
                "rsvd": mi["rsvd"] - self.base["rsvd"],
                "usage": cg("usage_in_bytes"), "cg_rsvd": cg("rsvd.usage_in_bytes"),
                "failcnt": ks.read_int(os.path.join(self.cg, "hugetlb.2MB.failcnt"))}

    def tempdir(self, owner: str | None = None) -> str:
        """A scratch directory (removed on close), owned by ``owner`` if given."""
        path = tempfile.mkdtemp(prefix="hugetlbsim-data-")
        self.data.append(path)
        if owner is not None:
            shutil.chown(path, owner, owner)
        return path

    def in_cgroup(self, command: str) -> list[str]:
        """A shell command line that joins the private cgroup, then runs ``command``."""
        return ["sh", "-c", f"echo $$ > {self.cg}/cgroup.procs && exec {command}"]

    def spawn(self, command: str, **kw: Any) -> subprocess.Popen[str]:
        """Start ``command`` in the cgroup; its pid is recorded for cleanup."""
        proc = subprocess.Popen(self.in_cgroup(command), text=True, **kw)
        assert self.rec is not None
        self.rec.note("workers", [proc.pid, ks.start_time(proc.pid)])
        return proc

    def procs(self) -> list[int]:
        """Processes in the private cgroup."""
        with open(os.path.join(self.cg, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]

    def close(self) -> None:
        """Kill what runs in the cgroup, then undo everything and release the lock."""
        try:
            if self.rec is not None:
                if os.path.isdir(getattr(self, "cg", "/nonexistent")):
                    for _ in range(50):
                        pids = self.procs()
                        if not pids:
                            break
                        for pid in pids:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
                        time.sleep(0.1)
                problems = cleanup(self.rec)
                self.rec = None
                assert not problems, problems
        finally:
            for path in self.data:
                shutil.rmtree(path, ignore_errors=True)
            os.close(self.lock_fd)
