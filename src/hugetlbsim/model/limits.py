"""The kernel's answers to sizes, offsets and lengths at the edges of its integer types and of a
process's address space (x86-64, 4-level page tables).

Scenario values are in huge pages; each check converts to bytes with the page size and applies
the kernel's own test, in the kernel's order, so that a value the kernel refuses (a size that
arrives as a negative ``off_t``, a mapping longer than the address space) gets the kernel's
errno on the model as on the live kernel.  Every number below was measured on 6.18.44.
"""

from __future__ import annotations

from hugetlbsim.model.errors import KernelError

__all__ = [
    "ELF_ET_DYN_BASE", "LLONG_MAX", "MAX_LFS_FILESIZE", "MMAP_MIN_ADDR", "PAGE_COUNTER_MAX",
    "SHMMAX", "TASK_SIZE", "check_fallocate_range", "check_mmap_range", "check_shm_size",
    "check_truncate_size", "limit_ceiling", "limit_pages", "page_bytes"
]

PAGE_SHIFT = 12
LLONG_MAX = 2**63 - 1
MAX_LFS_FILESIZE = LLONG_MAX
"""`s_maxbytes` of hugetlbfs (and so of memfd and shm inodes) on 64-bit."""
TASK_SIZE = 2**47 - 2**PAGE_SHIFT
"""The user address space (`TASK_SIZE_MAX`, 4-level paging)."""
ELF_ET_DYN_BASE = 0x555555554000
"""Where a PIE executable is loaded (2/3 of the address space) before ASLR moves it up by less
than 1 TiB: the largest hole a process surely has is the one below its executable."""
MMAP_MIN_ADDR = 0x10000
SHMMAX = 2**64 - 1 - 2**24
"""The default ``kernel.shmmax`` (`SHMMAX`, include/uapi/linux/shm.h)."""
PAGE_COUNTER_MAX = LLONG_MAX >> PAGE_SHIFT
"""The largest page_counter value, in 4 KB pages (`PAGE_COUNTER_MAX`, 64-bit)."""


def page_bytes(gigantic: bool) -> int:
    """The huge page size in bytes: 1 GB (gigantic) or 2 MB."""
    return 1 << 30 if gigantic else 2 << 20


def _bytes(pages: int, pagesize: int) -> int:
    return pages * pagesize


def check_truncate_size(size: int, pagesize: int) -> None:
    """`do_sys_ftruncate`: a length that arrives negative (>= 2^63 bytes) is EINVAL."""
    if _bytes(size, pagesize) > LLONG_MAX:
        raise KernelError("EINVAL", (
            f"a size of {size} pages is {_bytes(size, pagesize)} bytes, beyond 2^63 - 1: "
            f"ftruncate receives it as a negative off_t"))


def check_fallocate_range(offset: int, length: int, pagesize: int) -> None:
    """`vfs_fallocate`: a negative offset or length is EINVAL; ``offset + len`` beyond
    `MAX_LFS_FILESIZE` (or wrapping negative) is EFBIG."""
    start, size = _bytes(offset, pagesize), _bytes(length, pagesize)
    for name, value in (("offset", start), ("length", size)):
        if value > LLONG_MAX:
            raise KernelError("EINVAL", (
                f"the {name} is {value} bytes, beyond 2^63 - 1: fallocate receives it as a "
                f"negative loff_t"))
    if start + size > MAX_LFS_FILESIZE:
        raise KernelError("EFBIG", (
            f"offset + length is {start + size} bytes, beyond the largest file size "
            f"(2^63 - 1 bytes)"))


def check_mmap_range(offset: int, length: int, pagesize: int) -> None:
    """`do_mmap`, in its order: the length against the address space (ENOMEM), then
    `file_mmap_ok`: ``offset + len`` beyond `MAX_LFS_FILESIZE` is EOVERFLOW.

    The hole is the one below a PIE executable (`ELF_ET_DYN_BASE`); ASLR can raise the
    executable by up to 1 TiB, so on the kernel a length less than 1 TiB above this bound may
    still fit (measured: 85.7 to 86.3 TiB fit, 2^26 - 1 pages of 2 MB never).
    """
    size = _bytes(length, pagesize)
    if size > TASK_SIZE:
        raise KernelError("ENOMEM", (
            f"a length of {length} pages is {size} bytes, more than the whole address space "
            f"(TASK_SIZE = 2^47 - 4096 bytes): get_unmapped_area refuses it"))
    lowest = -(-MMAP_MIN_ADDR // pagesize) * pagesize  # the first aligned address
    hole = ELF_ET_DYN_BASE // pagesize * pagesize - lowest
    if size > hole:
        raise KernelError("ENOMEM", (
            f"a length of {length} pages is {size} bytes; the largest free hole of a process "
            f"(below its executable at {ELF_ET_DYN_BASE:#x}) holds {hole // pagesize} "
            f"pages: vm_unmapped_area finds no room"))
    if _bytes(offset, pagesize) + size > MAX_LFS_FILESIZE:
        raise KernelError("EOVERFLOW", (
            f"offset + length is {_bytes(offset, pagesize) + size} bytes, beyond the largest "
            f"file size (2^63 - 1 bytes): file_mmap_ok refuses it"))


def check_shm_size(size: int, pagesize: int) -> None:
    """`newseg`: a size above ``kernel.shmmax`` (default `SHMMAX`) is EINVAL."""
    if _bytes(size, pagesize) > SHMMAX:
        raise KernelError("EINVAL", (
            f"a segment of {size} pages is {_bytes(size, pagesize)} bytes, above shmmax "
            f"({SHMMAX})"))


def limit_ceiling(pagesize: int) -> int:
    """The unlimited hugetlb cgroup limit in huge pages: `PAGE_COUNTER_MAX` rounded down to
    whole huge pages (`hugetlb_cgroup_init`); a charge beyond it fails even with no limit set
    (measured: shmget of 2^42 pages of 2 MB raises rsvd.failcnt)."""
    return PAGE_COUNTER_MAX // (pagesize >> PAGE_SHIFT)


def limit_pages(pages: int, pagesize: int) -> int | None:
    """`hugetlb_cgroup_write`: the limit in 4 KB pages is capped at `PAGE_COUNTER_MAX` and
    rounded down to whole huge pages; the cap is the unlimited value (the same as ``-1``), so
    None.  (Measured: 2^42 - 1 pages of 2 MB and more read back as the unlimited limit.)"""
    return None if pages >= limit_ceiling(pagesize) else pages
