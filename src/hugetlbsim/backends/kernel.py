"""The live-kernel backend: runs each scenario step on this machine's kernel and reads back the
counters the kernel reports.

The scenario's world is built from private objects only (measured): a run directory
``/tmp/hugetlbsim-<pid>-<random>/`` with a run record (see `kernel_cleanup`), a private mount of
the cgroup v1 hugetlb hierarchy whose child ``hugetlbsim-<runid>`` is the scenario's ``root``
(the hierarchy's real root is machine-global), one hugetlbfs mount per ``mount`` step, and one
real worker process per scenario process (see `kernel_worker`).  The controller (this process)
holds the scenario's file handles outside every scenario cgroup, and performs only what charges
no task: open/memfd_create, close, unlink, IPC_RMID, mounts, cgroup and pool writes.

The pool, ``HugePages_Rsvd`` and the hierarchy are shared by the whole machine, so a session
refuses to start unless the pool is idle, holds a lock so sessions run one at a time, and
always tears down: on `KernelSession.close`, on any error inside a step, on Ctrl-C or SIGTERM, at
interpreter exit, and at the next start after a killed run.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from hugetlbsim.backends import kernel_sys as ks
from hugetlbsim.backends.base import BackendUnavailable, ScenarioRefused
from hugetlbsim.backends.kernel_cgroup import Hierarchy, OptionRefused, V1Hierarchy, V2Hierarchy
from hugetlbsim.backends.kernel_cleanup import (
    NR_HUGEPAGES,
    NR_OVERCOMMIT,
    RunRecord,
    clean_leftovers,
    cleanup,
)
from hugetlbsim.backends.kernel_worker import Worker, handle
from hugetlbsim.format.scenario import BYTE_ARGS, Scenario

__all__ = [
    "CG_FILE",
    "HP",
    "LOCK_FILE",
    "UNLIMITED",
    "KernelBackend",
    "KernelNotClean",
    "KernelSession",
    "acquire_lock",
    "machine_unavailable",
    "pool_busy",
]

HP = ks.PAGE_2M
CG_FILE = "hugetlb.2MB."
UNLIMITED = 1 << 62
"""A limit at or above this many bytes is "no limit" (the kernel shows slightly different
values for the pristine default and for a written -1, as measured)."""

_CHARGE_FREE = frozenset({"create", "memfd", "truncate", "punch"})
"""File operations that charge no task: without their process (its spawn failed) the
controller runs them itself."""
_ADVICE = {"dontneed": ks.MADV_DONTNEED, "remove": ks.MADV_REMOVE}

LOCK_FILE = "hugetlbsim.lock"
_LIVE: set[str] = set()
"""Run directories of this process's open sessions (not leftovers)."""


def acquire_lock(path: str, timeout: float) -> int:
    """Take the machine-wide session lock (flock), waiting up to `timeout` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise BackendUnavailable(
                    f"another hugetlbsim kernel session is running (lock {path})") from None
            time.sleep(0.05)


class KernelNotClean(RuntimeError):
    """Teardown could not restore the machine (pool not idle, a mount or cgroup left)."""


def machine_unavailable() -> str | None:
    """Why this machine cannot run the kernel backend at all, or None.

    (Whether the pool is idle is checked by each session, under the lock.)
    """
    if os.geteuid() != 0:
        return "the kernel backend needs root"
    with open("/proc/filesystems") as f:
        if "hugetlbfs" not in f.read().split():
            return "hugetlbfs is not available in this kernel"
    with open("/proc/cgroups") as f:
        rows = [line.split() for line in f if not line.startswith("#")]
    if not any(len(r) == 4 and r[0] == "hugetlb" and r[3] == "1" for r in rows):
        return "the hugetlb cgroup controller is not available"
    return None


def _check_machine() -> None:
    reason = machine_unavailable()
    if reason is not None:
        raise BackendUnavailable(reason)


def _check_scenario(scenario: Scenario, max_pages: int, remount_cgroup2: bool) -> None:
    if scenario.pagesize != "2M":
        raise ScenarioRefused(f"the kernel backend runs 2M pages only, not {scenario.pagesize}")
    if scenario.memory_accounting and not remount_cgroup2:
        raise ScenarioRefused(
            "memory_accounting needs cgroup2 mounted with memory_hugetlb_accounting and the "
            "memory controller on cgroup2; the kernel backend never changes the host's mounts "
            "(run it in a vm guest)")
    pages, overcommit = scenario.pool_pages, scenario.pool_overcommit
    worst = pages + overcommit
    for step in scenario.steps:
        if step.op == "pool":
            if step.args.get("pages") is not None:
                pages = step.args["pages"]
            if step.args.get("overcommit") is not None:
                overcommit = step.args["overcommit"]
            worst = max(worst, pages + overcommit)
    if worst > max_pages:
        raise ScenarioRefused(
            f"the scenario could need {worst} huge pages; the kernel backend allows {max_pages}")
    for step in scenario.steps:
        for arg in BYTE_ARGS.get(step.op, ()):
            value = step.args.get(arg)
            if isinstance(value, int) and value * HP >> 64:
                raise ScenarioRefused(
                    f"step {step.index + 1} ({step.op}): {arg} {value} is {value * HP} bytes, "
                    f"which no 64-bit system call argument can carry")


def pool_busy() -> str | None:
    mi = ks.meminfo_hugepages()
    ovc = ks.read_int(NR_OVERCOMMIT)
    if any(mi[k] for k in ("total", "free", "rsvd", "surp")) or ovc:
        return (f"HugePages_Total/Free/Rsvd/Surp = {mi['total']}/{mi['free']}/{mi['rsvd']}/"
                f"{mi['surp']}, nr_overcommit_hugepages = {ovc}")
    return None


class KernelBackend:
    """Runs scenarios on the live kernel of this machine (root, 2M pages, idle pool)."""

    name = "kernel"

    def __init__(self, max_pages: int = 64, tmpdir: str = "/tmp",
                 lock_timeout: float = 0.0, remount_cgroup2: bool = False) -> None:
        self.max_pages = max_pages
        """Refuse scenarios whose pool (pages + overcommit) could exceed this."""
        self.tmpdir = tmpdir
        """Where run directories and the lock file live (leftovers are looked for here)."""
        self.lock_timeout = lock_timeout
        """Seconds to wait for another session (of any process) to finish; 0 refuses at once."""
        self.remount_cgroup2 = remount_cgroup2
        """The machine is disposable (a vm guest): ``memory_accounting`` scenarios may remount
        its cgroup2 with ``memory_hugetlb_accounting``.  Never on a host: the option is global
        to the machine."""

    def version(self) -> str:
        """``uname -r``."""
        return os.uname().release

    def open(self, scenario: Scenario) -> KernelSession:
        """Check the machine and the scenario, clean leftovers, build the initial system."""
        _check_scenario(scenario, self.max_pages, self.remount_cgroup2)
        _check_machine()
        return KernelSession(scenario, self.tmpdir, self.lock_timeout)


@dataclass
class _Mapping:
    base: int
    pages: int
    mapped: list[tuple[int, int]]
    """Sorted runs ``[first, end)`` of the pages of the mapping as created that are still mapped
    (the rest must never be touched: another mapping may live there now).  Runs, not pages, so
    that a mapping of tens of millions of pages costs nothing."""

    def addr(self, page: int) -> int:
        return self.base + page * HP

    def runs(self, start: int, end: int) -> list[tuple[int, int]]:
        """Mapped (first page, count) runs within [start, end)."""
        return [(max(lo, start), min(hi, end) - max(lo, start)) for lo, hi in self.mapped
                if max(lo, start) < min(hi, end)]

    def unmap(self, start: int, end: int) -> None:
        """Pages [start, end) are no longer mapped."""
        kept = [(lo, min(hi, start)) for lo, hi in self.mapped if lo < start]
        kept += [(max(lo, end), hi) for lo, hi in self.mapped if hi > end]
        self.mapped = sorted(kept)

    def mapped_from(self, page: int) -> int:
        """How many pages from ``page`` on are mapped without a hole."""
        return next((hi - page for lo, hi in self.mapped if lo <= page < hi), 0)


@dataclass
class _Proc:
    worker: Worker
    maps: dict[str, _Mapping] = field(default_factory=dict)


@dataclass
class _File:
    path: str | None
    """The hugetlbfs path; None for a memfd."""
    fd: int | None
    """The scenario's handle (held by the controller), None once closed."""
    mount: str | None
    linked: bool


class KernelSession:
    """One scenario on the live kernel (see the module docstring)."""

    def __init__(self, scenario: Scenario, tmpdir: str, lock_timeout: float = 0.0) -> None:
        self._closed = False
        self._procs: dict[str, _Proc] = {}
        self._files: dict[str, _File] = {}
        self._mounts: dict[str, tuple[str, bool]] = {}
        self._unmounted: set[str] = set()
        self._cgroups: list[str] = []
        self._cg_tree: Hierarchy | None = None
        self._shms: dict[str, tuple[int, int]] = {}
        self._old_sigterm: Any = None
        self._lock_fd = acquire_lock(os.path.join(tmpdir, LOCK_FILE), lock_timeout)
        self._rec: RunRecord | None = None
        atexit.register(self.close)
        try:
            self._setup(scenario, tmpdir)
        except BaseException:
            self.close()
            raise

    def _setup(self, scenario: Scenario, tmpdir: str) -> None:
        problems = clean_leftovers(tmpdir, _LIVE)
        if problems:
            raise BackendUnavailable("leftovers of an earlier run could not be cleaned: "
                                     + "; ".join(problems))
        busy = pool_busy()
        if busy:
            raise BackendUnavailable(f"the huge page pool is not idle: {busy}")
        self._install_sigterm()
        rundir = os.path.realpath(tempfile.mkdtemp(prefix=f"hugetlbsim-{os.getpid()}-",
                                                   dir=tmpdir))
        _LIVE.add(rundir)
        rec = self._rec = RunRecord(rundir, os.getpid(), ks.start_time(os.getpid()))
        rec.orig_nr_hugepages = ks.read_int(NR_HUGEPAGES)
        rec.orig_overcommit = ks.read_int(NR_OVERCOMMIT)
        self._cg_tree = (V2Hierarchy(rec, memory=scenario.memory_accounting)
                         if scenario.cgroups == "v2" else V1Hierarchy(rec))
        try:
            self._tree.setup()
        except OptionRefused as e:
            raise ScenarioRefused(str(e)) from None
        except RuntimeError as e:
            raise BackendUnavailable(str(e)) from None
        self._cgroups.append("root")
        self._op_pool({"pages": scenario.pool_pages, "overcommit": scenario.pool_overcommit})
        got = ks.meminfo_hugepages()["total"]
        if got < scenario.pool_pages:
            raise BackendUnavailable(f"the pool could only grow to {got} of "
                                     f"{scenario.pool_pages} pages")
        r = self._op_spawn({"proc": "init", "cgroup": "root"})
        if r != "ok":
            raise BackendUnavailable(f"cannot move a process into a hugetlb cgroup: {r}")

    # ---- Session protocol -------------------------------------------------------------------

    def apply(self, op: str, args: Mapping[str, Any]) -> str:
        """Run one scenario operation on the kernel; tear everything down if it raises."""
        if self._closed:
            raise RuntimeError("the kernel session is closed")
        proc = args.get("proc")
        if (op != "spawn" and proc is not None and proc not in self._procs
                and op not in _CHARGE_FREE):
            return "ESRCH"  # the process's spawn failed
        try:
            result: str = getattr(self, "_op_" + op)(args)
        except BaseException:
            self.close()
            raise
        return result

    def explain(self) -> str | None:
        """The kernel gives no reasons."""
        return None

    def state(self) -> dict[str, Any]:
        """Read every counter: /proc/meminfo, the sysctl, cgroup files, statfs, stat."""
        try:
            return self._read_state()
        except BaseException:
            self.close()
            raise

    def _read_state(self) -> dict[str, Any]:
        mi = ks.meminfo_hugepages()
        cgroups: dict[str, dict[str, int | None]] = {}
        for name in self._cgroups:
            try:
                cgroups[name] = self._tree.read(name)
            except FileNotFoundError:
                continue
        mounts = {name: {"free": os.statvfs(path).f_bfree if sized else None}
                  for name, (path, sized) in self._mounts.items()}
        files: dict[str, dict[str, int]] = {}
        for name, f in self._files.items():
            try:
                if f.path is None and f.fd is not None:
                    st = os.fstat(f.fd)
                elif f.path is not None and f.linked:
                    st = os.stat(f.path)
                else:
                    continue
            except FileNotFoundError:
                continue
            files[name] = {"blocks": st.st_blocks * 512 // HP, "size": st.st_size // HP}
        state = {"total": mi["total"], "free": mi["free"], "rsvd": mi["rsvd"],
                 "surp": mi["surp"], "nr_hugepages": ks.read_int(NR_HUGEPAGES),
                 "cgroups": cgroups, "mounts": mounts, "files": files}
        nodes = ks.node_hugepages()
        if len(nodes) > 1:  # a NUMA machine: the pool per node (an extra key of the trace)
            state["nodes"] = nodes
        return state

    def kernel(self) -> str:
        """``uname -r`` of the live kernel."""
        return os.uname().release

    def close(self) -> None:
        """Kill the workers and undo everything the run record lists; raise if not clean."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        # Ctrl-C or SIGTERM must not cut the teardown short; they are delivered afterwards.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            problems = self._teardown()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if problems:
            msg = "hugetlbsim kernel teardown is NOT clean: " + "; ".join(problems)
            print(msg, file=sys.stderr)
            raise KernelNotClean(msg)

    def _teardown(self) -> list[str]:
        problems: list[str] = []
        for proc in self._procs.values():
            try:
                proc.worker.kill()
            except Exception as e:
                problems.append(str(e))
        self._procs.clear()
        for f in self._files.values():
            if f.fd is not None:
                os.close(f.fd)
        self._files.clear()
        if self._rec is not None:
            problems.extend(cleanup(self._rec))
            _LIVE.discard(self._rec.rundir)
            busy = pool_busy()
            if busy:
                problems.append(f"the pool is not idle after cleanup: {busy}")
            ours = [p for p in ks.mount_points() if p.startswith(self._rec.rundir + "/")]
            if ours:
                problems.append("mounts left: " + ", ".join(ours))
        self._restore_sigterm()
        os.close(self._lock_fd)
        return problems

    def __enter__(self) -> KernelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- signals ----------------------------------------------------------------------------

    def _install_sigterm(self) -> None:
        """Turn SIGTERM into SystemExit so teardown runs (only where nobody else handles it)."""
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    # ---- helpers ----------------------------------------------------------------------------

    @property
    def _record(self) -> RunRecord:
        assert self._rec is not None
        return self._rec

    @property
    def _tree(self) -> Hierarchy:
        """The scenario's cgroups: a private v1 hierarchy or a cgroup2 subtree."""
        assert self._cg_tree is not None
        return self._cg_tree


    def _worker(self, proc: str) -> Worker:
        return self._procs[proc].worker

    def _file_path(self, name: str) -> str | None:
        """How a worker opens a scenario file: the controller's handle, else the path."""
        f = self._files.get(name)
        if f is None:
            return None
        if f.fd is not None:
            return f"/proc/{os.getpid()}/fd/{f.fd}"
        return f.path if f.linked else None

    def _file_call(self, name: str, proc: str, op: str, **args: Any) -> str:
        path = self._file_path(name)
        if path is None:
            return "ENOENT"
        task = self._procs.get(proc)
        reply = task.worker.call(op, path=path, **args) if task else handle(
            {"op": op, "path": path, **args})
        r: str = reply["r"]
        return r

    # ---- operations -------------------------------------------------------------------------

    def _op_pool(self, a: Mapping[str, Any]) -> str:
        for path, value in ((NR_OVERCOMMIT, a["overcommit"]), (NR_HUGEPAGES, a["pages"])):
            if value is not None:
                r = ks.write_str(path, str(value))
                if r != "ok":
                    return r
        return "ok"

    def _op_mount(self, a: Mapping[str, Any]) -> str:
        path = os.path.join(self._record.rundir, "mnt-" + a["name"])
        self._record.note("mounts", path)
        opts = "pagesize=2M"
        if a["size"] is not None:
            opts += f",size={a['size'] * 2}M"
        if a["min_size"] is not None:
            opts += f",min_size={a['min_size'] * 2}M"
        fresh = not os.path.isdir(path)  # else a mount that refused to go (EBUSY) is there
        if fresh:
            os.mkdir(path)
        r = ks.mount("hugetlbfs", path, opts)
        if r != "ok":
            if fresh:
                os.rmdir(path)
            return r
        self._mounts[a["name"]] = (path, a["size"] is not None)
        self._unmounted.discard(a["name"])
        return "ok"

    def _op_umount(self, a: Mapping[str, Any]) -> str:
        name = a["name"]
        if name not in self._mounts:
            # umount(2) where nothing is mounted: of a mount point removed after its umount,
            # ENOENT; of the directory a failed mount left, EINVAL (as measured: P04c)
            return "ENOENT" if name in self._unmounted else "EINVAL"
        path = self._mounts[name][0]
        r = ks.umount(path)
        if r == "ok":
            if path not in ks.mount_points():
                os.rmdir(path)
            del self._mounts[name]
            self._unmounted.add(name)
            for fname in [n for n, f in self._files.items() if f.mount == name]:
                del self._files[fname]
        return r

    def _op_cgroup(self, a: Mapping[str, Any]) -> str:
        name = a["name"]
        if name not in self._cgroups:
            r = self._tree.mkdir(name)
            if r != "ok":
                return r
            self._cgroups.append(name)
        for key in ("limit", "rsvd_limit"):
            if a[key] is not None:
                r = self._tree.write_limit(name, key, a[key])
                if r != "ok":
                    return r
        return "ok"

    def _op_rmdir(self, a: Mapping[str, Any]) -> str:
        name = a["cgroup"]
        if name not in self._cgroups:
            return "ENOENT"
        r = self._tree.rmdir(name)
        if r == "ok":
            self._cgroups.remove(name)
        return r

    def _op_spawn(self, a: Mapping[str, Any]) -> str:
        """A fresh worker, moved into its cgroup; if that is refused, the process is absent."""
        worker = Worker.spawn()
        self._record.note("workers", [worker.pid, worker.start])
        r = ks.write_str(self._tree.procs(a["cgroup"]), str(worker.pid))
        if r == "ok":
            self._procs[a["proc"]] = _Proc(worker)
        else:
            worker.kill()
        return r

    def _op_attach(self, a: Mapping[str, Any]) -> str:
        pid = self._worker(a["proc"]).pid
        return ks.write_str(self._tree.procs(a["cgroup"]), str(pid))

    def _op_fork(self, a: Mapping[str, Any]) -> str:
        parent = self._procs[a["proc"]]
        r, child = parent.worker.fork()
        if child is not None:
            self._record.note("workers", [child.pid, child.start])
            self._procs[a["child"]] = _Proc(child, {
                name: _Mapping(m.base, m.pages, list(m.mapped)) for name, m in parent.maps.items()})
        return r

    def _op_exit(self, a: Mapping[str, Any]) -> str:
        self._procs.pop(a["proc"]).worker.exit()
        return "ok"

    def _op_create(self, a: Mapping[str, Any]) -> str:
        mount, _, base = a["file"].partition("/")
        path = os.path.join(self._record.rundir, "mnt-" + mount, base)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            return ks.errname(e.errno or 0)
        self._files[a["file"]] = _File(path, fd, mount, linked=True)
        return self._initial_size(a)

    def _op_memfd(self, a: Mapping[str, Any]) -> str:
        name = a["file"].removeprefix("memfd:")
        try:
            fd = os.memfd_create(name, os.MFD_HUGETLB | os.MFD_CLOEXEC)
        except OSError as e:
            return ks.errname(e.errno or 0)
        self._files[a["file"]] = _File(None, fd, None, linked=False)
        return self._initial_size(a)

    def _initial_size(self, a: Mapping[str, Any]) -> str:
        if a["size"] is None:
            return "ok"
        return self._file_call(a["file"], a["proc"], "ftruncate", size=a["size"] * HP)

    def _op_truncate(self, a: Mapping[str, Any]) -> str:
        return self._file_call(a["file"], a["proc"], "ftruncate", size=a["size"] * HP)

    def _op_fallocate(self, a: Mapping[str, Any]) -> str:
        mode = ks.FALLOC_FL_KEEP_SIZE if a["keep_size"] else 0
        return self._file_call(a["file"], a["proc"], "fallocate", mode=mode,
                               offset=a["offset"] * HP, length=a["length"] * HP)

    def _op_punch(self, a: Mapping[str, Any]) -> str:
        mode = ks.FALLOC_FL_PUNCH_HOLE | ks.FALLOC_FL_KEEP_SIZE
        return self._file_call(a["file"], a["proc"], "fallocate", mode=mode,
                               offset=a["offset"] * HP, length=a["length"] * HP)

    def _op_close(self, a: Mapping[str, Any]) -> str:
        f = self._files.get(a["file"])
        if f is None or f.fd is None:
            return "ENOENT"
        os.close(f.fd)
        f.fd = None
        if not f.linked:
            del self._files[a["file"]]
        return "ok"

    def _op_unlink(self, a: Mapping[str, Any]) -> str:
        f = self._files.get(a["file"])
        if f is None or f.path is None:
            return "ENOENT"
        try:
            os.unlink(f.path)
        except OSError as e:
            return ks.errname(e.errno or 0)
        f.linked = False
        if f.fd is None:
            del self._files[a["file"]]
        return "ok"

    def _op_shmget(self, a: Mapping[str, Any]) -> str:
        flags = ks.SHM_HUGETLB | (ks.SHM_NORESERVE if a["noreserve"] else 0)
        reply = self._worker(a["proc"]).call("shmget", size=a["size"] * HP, flags=flags)
        if reply["r"] == "ok":
            self._record.note("shm", reply["id"])
            self._shms[a["shm"]] = (reply["id"], a["size"])
        r: str = reply["r"]
        return r

    def _op_shmrm(self, a: Mapping[str, Any]) -> str:
        shm = self._shms.pop(a["shm"], None)
        if shm is None:
            return "EINVAL"
        return ks.shm_rmid(shm[0])

    def _op_mmap(self, a: Mapping[str, Any]) -> str:
        worker = self._worker(a["proc"])
        if a["shm"] is not None:
            shm = self._shms.get(a["shm"])
            if shm is None:
                return "EINVAL"
            reply = worker.call("shmat", id=shm[0], flags=0 if a["writable"] else ks.SHM_RDONLY)
            pages = shm[1]
        else:
            prot = ks.PROT_READ | (ks.PROT_WRITE if a["writable"] else 0)
            flags = ks.MAP_SHARED if a["shared"] else ks.MAP_PRIVATE
            flags |= ks.MAP_NORESERVE if a["noreserve"] else 0
            flags |= ks.MAP_POPULATE if a["populate"] else 0
            path = None
            if a["anon"]:
                flags |= ks.MAP_ANONYMOUS | ks.MAP_HUGETLB
            else:
                path = self._file_path(a["file"])
                if path is None:
                    return "ENOENT"
            pages = a["length"]
            reply = worker.call("mmap", path=path, length=pages * HP, prot=prot, flags=flags,
                                offset=a["offset"] * HP)
        if reply["r"] == "ok":
            self._procs[a["proc"]].maps[a["map"]] = _Mapping(reply["addr"], pages, [(0, pages)])
        r: str = reply["r"]
        return r

    def _span(self, m: _Mapping, a: Mapping[str, Any]) -> tuple[int, int]:
        length = a["length"]
        return a["offset"], m.pages if length is None else a["offset"] + length

    def _mem(self, proc: str, call: str, m: _Mapping, runs: list[tuple[int, int]],
             arg: int = 0) -> str:
        ranges = [[m.addr(first), count * HP] for first, count in runs]
        r: str = self._worker(proc).call("mem", call=call, ranges=ranges, arg=arg)["r"]
        return r

    def _op_munmap(self, a: Mapping[str, Any]) -> str:
        proc = self._procs[a["proc"]]
        m = proc.maps.get(a["map"])
        if m is None:
            return "ok"
        start, end = self._span(m, a)
        runs = m.runs(start, end)
        r = self._mem(a["proc"], "munmap", m, runs) if runs else "ok"
        if r == "ok":
            m.unmap(start, end)
            if not m.mapped:
                del proc.maps[a["map"]]
        return r

    def _op_mprotect(self, a: Mapping[str, Any]) -> str:
        """mprotect changes the mapped prefix of the range, then fails at the first hole."""
        m = self._procs[a["proc"]].maps.get(a["map"])
        if m is None:
            return "ENOMEM"
        start, end = self._span(m, a)
        runs = m.runs(start, end)
        if not runs or runs[0][0] != start:
            return "ENOMEM"
        prot = ks.PROT_READ | (ks.PROT_WRITE if a["writable"] else 0)
        r = self._mem(a["proc"], "mprotect", m, runs[:1], prot)
        if r == "ok" and runs[0][1] != end - start:
            return "ENOMEM"
        return r

    def _op_madvise(self, a: Mapping[str, Any]) -> str:
        """madvise applies to every mapped part of the range, then reports a hole as ENOMEM."""
        m = self._procs[a["proc"]].maps.get(a["map"])
        if m is None:
            return "ENOMEM"
        start, end = a["page"], a["page"] + a["count"]
        runs = m.runs(start, end)
        r = self._mem(a["proc"], "madvise", m, runs, _ADVICE[a["advice"]]) if runs else "ok"
        if r == "ok" and sum(c for _, c in runs) != end - start:
            return "ENOMEM"
        return r

    def _op_touch(self, a: Mapping[str, Any]) -> str:
        """Fault pages in order with MADV_POPULATE_*: EFAULT is the SIGBUS a fault would raise,
        EINVAL a write to a read-only mapping and ENOMEM (or a hole) an unmapped address."""
        m = self._procs[a["proc"]].maps.get(a["map"])
        if m is None:
            return "SIGSEGV"
        count = min(a["count"], m.mapped_from(a["page"]))
        advice = ks.MADV_POPULATE_WRITE if a["write"] else ks.MADV_POPULATE_READ
        r: str = "ok"
        if count:
            r = self._worker(a["proc"]).call("touch", addr=m.addr(a["page"]), count=count,
                                             advice=advice)["r"]
        if r == "ok":
            return "ok" if count == a["count"] else "SIGSEGV"
        return {"EFAULT": "SIGBUS", "EINVAL": "SIGSEGV", "ENOMEM": "SIGSEGV"}.get(r, r)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
