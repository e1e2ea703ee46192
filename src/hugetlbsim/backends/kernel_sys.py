"""Thin ctypes wrappers for the system calls the kernel backend drives, plus procfs readers.

Every wrapper returns the kernel's answer instead of raising: ``"ok"`` or the errno name
(``"ENOMEM"``...), because a refused call is a scenario result, not an error.  Faults are never
taken by touching memory: a SIGBUS in Python spins forever (measured), so pages are
populated with ``MADV_POPULATE_READ/WRITE``, which report a failed fault as ``EFAULT``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import time
from typing import Any

__all__ = [
    "FALLOC_FL_KEEP_SIZE",
    "FALLOC_FL_PUNCH_HOLE",
    "IPC_CREAT",
    "IPC_PRIVATE",
    "IPC_RMID",
    "MADV_DONTNEED",
    "MADV_POPULATE_READ",
    "MADV_POPULATE_WRITE",
    "MADV_REMOVE",
    "MAP_ANONYMOUS",
    "MAP_FAILED",
    "MAP_HUGETLB",
    "MAP_NORESERVE",
    "MAP_POPULATE",
    "MAP_PRIVATE",
    "MAP_SHARED",
    "PAGE_2M",
    "PROT_READ",
    "PROT_WRITE",
    "SHM_HUGETLB",
    "SHM_NORESERVE",
    "SHM_RDONLY",
    "errname",
    "fallocate",
    "ftruncate",
    "kill_and_wait",
    "madvise",
    "meminfo_hugepages",
    "mmap",
    "mount",
    "mount_options",
    "mount_points",
    "mprotect",
    "munmap",
    "node_hugepages",
    "read_int",
    "remount",
    "shm_rmid",
    "shmat",
    "shmget",
    "start_time",
    "umount",
    "umount_retrying",
    "wait_exit",
    "write_str"
]

PAGE_2M = 2 << 20

PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_HUGETLB = 0x40000

MADV_DONTNEED = 4
MADV_REMOVE = 9
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0
SHM_HUGETLB = 0o4000
SHM_NORESERVE = 0o10000
SHM_RDONLY = 0o10000

MAP_FAILED = (1 << 64) - 1

_libc = ctypes.CDLL(None, use_errno=True)


def _fn(name: str, restype: object, *argtypes: object) -> Any:
    f = getattr(_libc, name)
    f.restype = restype
    f.argtypes = argtypes
    return f


_c = ctypes
_mmap = _fn("mmap", _c.c_void_p, _c.c_void_p, _c.c_size_t, _c.c_int, _c.c_int, _c.c_int,
            _c.c_long)
_munmap = _fn("munmap", _c.c_int, _c.c_void_p, _c.c_size_t)
_mprotect = _fn("mprotect", _c.c_int, _c.c_void_p, _c.c_size_t, _c.c_int)
_madvise = _fn("madvise", _c.c_int, _c.c_void_p, _c.c_size_t, _c.c_int)
_fallocate = _fn("fallocate", _c.c_int, _c.c_int, _c.c_int, _c.c_long, _c.c_long)
_ftruncate = _fn("ftruncate", _c.c_int, _c.c_int, _c.c_long)
_shmget = _fn("shmget", _c.c_int, _c.c_int, _c.c_size_t, _c.c_int)
_shmat = _fn("shmat", _c.c_void_p, _c.c_int, _c.c_void_p, _c.c_int)
_shmctl = _fn("shmctl", _c.c_int, _c.c_int, _c.c_int, _c.c_void_p)
_mount = _fn("mount", _c.c_int, _c.c_char_p, _c.c_char_p, _c.c_char_p, _c.c_ulong, _c.c_char_p)
_umount2 = _fn("umount2", _c.c_int, _c.c_char_p, _c.c_int)


def errname(num: int) -> str:
    """The symbolic name of an errno value (``"E123"`` if unknown)."""
    return errno.errorcode.get(num, f"E{num}")


def _last_error() -> str:
    return errname(ctypes.get_errno())


def _rc(ret: int) -> str:
    return "ok" if ret == 0 else _last_error()


def _signed(value: int) -> int:
    """The 64-bit pattern of ``value`` as a C long: 2^63 and above arrive negative, exactly as
    a C program passing them to an off_t / loff_t parameter would have them arrive.  A value
    no 64-bit argument can carry is the caller's error (the loader refuses it)."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} does not fit a 64-bit system call argument")
    return value - (1 << 64) if value >> 63 else value


def _unsigned(value: int) -> int:
    """A size_t argument: checked, never silently wrapped by ctypes."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} does not fit a 64-bit system call argument")
    return value


def mmap(length: int, prot: int, flags: int, fd: int, offset: int) -> tuple[str, int]:
    """mmap(2) at a kernel-chosen address: (result, address)."""
    addr = _mmap(None, _unsigned(length), prot, flags, fd, _signed(offset))
    if addr is None or addr == MAP_FAILED:
        return _last_error(), 0
    return "ok", int(addr)


def munmap(addr: int, length: int) -> str:
    """munmap(2)."""
    return _rc(_munmap(addr, length))


def mprotect(addr: int, length: int, prot: int) -> str:
    """mprotect(2)."""
    return _rc(_mprotect(addr, length, prot))


def madvise(addr: int, length: int, advice: int) -> str:
    """madvise(2); MADV_POPULATE_* turn a failing fault into EFAULT instead of SIGBUS."""
    while True:
        ret = _madvise(addr, length, advice)
        if ret == 0:
            return "ok"
        err = ctypes.get_errno()
        if err not in (errno.EINTR, errno.EAGAIN):
            return errname(err)


def fallocate(fd: int, mode: int, offset: int, length: int) -> str:
    """fallocate(2) with an explicit mode (Python only offers posix_fallocate)."""
    return _rc(_fallocate(fd, mode, _signed(offset), _signed(length)))


def ftruncate(fd: int, length: int) -> str:
    """ftruncate(2) with the length's 64-bit pattern (os.ftruncate refuses 2^63 and more with
    OverflowError; the kernel answers EINVAL for the negative off_t they become)."""
    return _rc(_ftruncate(fd, _signed(length)))


def shmget(size: int, flags: int) -> tuple[str, int]:
    """shmget(IPC_PRIVATE, size, IPC_CREAT|0600|flags): (result, shmid)."""
    shmid = _shmget(IPC_PRIVATE, _unsigned(size), IPC_CREAT | 0o600 | flags)
    if shmid < 0:
        return _last_error(), -1
    return "ok", int(shmid)


def shmat(shmid: int, flags: int) -> tuple[str, int]:
    """shmat(2) at a kernel-chosen address: (result, address)."""
    addr = _shmat(shmid, None, flags)
    if addr is None or addr == MAP_FAILED:
        return _last_error(), 0
    return "ok", int(addr)


def shm_rmid(shmid: int) -> str:
    """shmctl(IPC_RMID): the segment goes at its last detach."""
    return _rc(_shmctl(shmid, IPC_RMID, None))


def mount(fstype: str, target: str, data: str) -> str:
    """mount(2) of a pseudo filesystem (source "none")."""
    return _rc(_mount(b"none", target.encode(), fstype.encode(), 0, data.encode()))


_MNT_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
              "relatime": 1 << 21}
"""Per-mount options of /proc/self/mountinfo and their MS_* bits (a remount resets them)."""
MS_REMOUNT = 32


def mount_options(target: str) -> tuple[list[str], list[str]] | None:
    """(per-mount options, superblock options) of the mount at ``target`` as mountinfo shows
    them (the last mount there), or None if nothing is mounted there."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4].encode().decode("unicode_escape") == target:
                found = fields[5].split(","), fields[sep + 3].split(",")
    return found


def remount(target: str, data: str) -> str:
    """mount(2) with MS_REMOUNT: the superblock's options become ``data``; the mount's own
    flags (nosuid, noexec...) are kept."""
    options = mount_options(target)
    if options is None:
        return "EINVAL"
    flags = MS_REMOUNT
    for opt in options[0]:
        flags |= _MNT_FLAGS.get(opt, 0)
    return _rc(_mount(b"none", target.encode(), None, flags, data.encode()))


def umount(target: str) -> str:
    """umount2(target, 0): EBUSY while anything still uses the mount."""
    return _rc(_umount2(target.encode(), 0))


def umount_retrying(target: str, attempts: int = 40) -> str:
    """umount, retrying EBUSY for about two seconds: a reader such as `hugetlbsim status`
    walking the mount holds it busy for a moment (seen once in a 5000-scenario campaign)."""
    r = umount(target)
    while r == "EBUSY" and attempts > 0:
        time.sleep(0.05)
        attempts -= 1
        r = umount(target)
    return r


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): tells a pid from its reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


def kill_and_wait(pidfd: int, timeout: float = 10.0) -> bool:
    """SIGKILL a process by pidfd and wait until it has exited (its mm is torn down by then)."""
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    return wait_exit(pidfd, timeout)


def wait_exit(pidfd: int, timeout: float = 10.0) -> bool:
    """Wait until the process behind a pidfd has exited: True if it has."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


def read_int(path: str) -> int:
    """A file holding one integer (sysctl, cgroup counter)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return int(os.read(fd, 64))
    finally:
        os.close(fd)


def write_str(path: str, value: str) -> str:
    """Write a value to a sysctl or cgroup file: "ok" or the errno name of the write."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return errname(e.errno or 0)
    try:
        os.write(fd, value.encode())
    except OSError as e:
        return errname(e.errno or 0)
    finally:
        os.close(fd)
    return "ok"


def meminfo_hugepages() -> dict[str, int]:
    """HugePages_Total/Free/Rsvd/Surp of /proc/meminfo, unsigned as the kernel prints them."""
    with open("/proc/meminfo", "rb") as f:
        data = f.read()
    out: dict[str, int] = {}
    for line in data.split(b"\n"):
        if line.startswith(b"HugePages_"):
            key, _, value = line.partition(b":")
            out[key[10:].decode().lower()] = int(value)
    return out


def mount_points() -> dict[str, str]:
    """Mount point -> filesystem type, from /proc/self/mountinfo."""
    points: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].encode().decode("unicode_escape")
            points[point] = fields[sep + 1]
    return points


def node_hugepages(root: str = "/sys/devices/system/node") -> dict[str, dict[str, int]]:
    """Per NUMA node, its 2 MB pool: ``{"node0": {"total": .., "free": .., "surp": ..}}``."""
    nodes: dict[str, dict[str, int]] = {}
    try:
        names = sorted(n for n in os.listdir(root) if n.startswith("node") and n[4:].isdigit())
    except OSError:
        return nodes
    for name in names:
        base = os.path.join(root, name, "hugepages", "hugepages-2048kB")
        try:
            nodes[name] = {key: read_int(os.path.join(base, f"{file}_hugepages"))
                           for key, file in (("total", "nr"), ("free", "free"),
                                             ("surp", "surplus"))}
        except OSError:
            continue
    return nodes
