"""File operations on hugetlbfs inodes (fs/hugetlbfs/inode.c): truncate, fallocate, hole
punch, eviction.

Truncation always drops the reservations beyond the new size, growing or not; a hole punch
frees only the pages that exist and leaves the reservations of never-faulted indexes alone;
fallocate allocates like a fault on a shared mapping and keeps what it allocated when it runs
out with ENOSPC.
"""

from __future__ import annotations

from hugetlbsim.model.bulk import fallocate_range
from hugetlbsim.model.errors import KernelError
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.inode import Inode, remove_inode_hugepages
from hugetlbsim.model.limits import check_fallocate_range, check_truncate_size, page_bytes
from hugetlbsim.model.resv_map import LONG_MAX
from hugetlbsim.model.unmap import zap_file_range
from hugetlbsim.model.vma import VMA, Process

__all__ = [
    "check_fallocate_args", "evict_inode", "hugetlb_vmtruncate", "hugetlbfs_fallocate",
    "hugetlbfs_punch_hole"
]


def hugetlb_vmtruncate(inode: Inode, size: int) -> None:
    """ftruncate: set the size, unmap and free the pages beyond it, drop its reservations."""
    check_truncate_size(size, page_bytes(inode.hstate.gigantic))
    inode.i_size = size
    zap_file_range(list(inode.i_mmap), size, LONG_MAX)
    remove_inode_hugepages(inode, size)


def hugetlbfs_punch_hole(inode: Inode, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE|KEEP_SIZE) over whole pages ``[offset, offset + length)``."""
    check_fallocate_range(offset, length, page_bytes(inode.hstate.gigantic))
    zap_file_range(list(inode.i_mmap), offset, offset + length)
    remove_inode_hugepages(inode, offset, offset + length)


def hugetlbfs_fallocate(inode: Inode, offset: int, length: int, keep_size: bool,
                        task: Process, cgroup: HugetlbCgroup) -> None:
    """fallocate mode 0 / KEEP_SIZE: allocate every missing page as a shared fault would.

    On failure (ENOSPC) the pages already allocated stay and the size is not raised.
    """
    check_fallocate_range(offset, length, page_bytes(inode.hstate.gigantic))
    pseudo = VMA(task, inode, 0, LONG_MAX, 0, shared=True, noreserve=False, writable=True)
    fallocate_range(pseudo, offset, offset + length, cgroup)
    if not keep_size and offset + length > inode.i_size:
        inode.i_size = offset + length


def evict_inode(inode: Inode) -> None:
    """`hugetlbfs_evict_inode`: free every page and release every reservation."""
    remove_inode_hugepages(inode, 0)
    inode.evicted = True


def check_fallocate_args(offset: int, length: int) -> None:
    """`vfs_fallocate` refuses an empty range."""
    if length <= 0:
        raise KernelError("EINVAL", "fallocate needs a length of at least one page")
