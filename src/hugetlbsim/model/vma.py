"""Processes and their hugetlb mappings (`struct vm_area_struct` pieces).

A scenario mapping is one VMA when created; munmap and mprotect may split it into pieces that
share the private reservation map (`vm_private_data`) and its owner bit.  Page indexes of a
VMA are *virtual* pages relative to the scenario mapping's start; `pgoff` converts them to
file indexes.  Page table entries live here as a dict from virtual page to `Pte`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hugetlbsim.model.folio import Folio, FolioBlocks
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.resv_map import ResvMap

if TYPE_CHECKING:
    from hugetlbsim.model.inode import Inode

__all__ = ["VMA", "PrivateResv", "Process", "Pte"]


@dataclass(eq=False)
class PrivateResv:
    """A private mapping's reservation map plus the cgroup its reservation was charged to."""

    map: ResvMap
    cgroup: HugetlbCgroup | None


@dataclass(slots=True)
class Pte:
    """A present huge page table entry."""

    folio: Folio
    writable: bool


@dataclass(eq=False)
class Process:
    """A task with its mm: the cgroup it charges and its mappings by scenario name."""

    name: str
    cgroup: HugetlbCgroup
    maps: dict[str, list[VMA]] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    """Each mapping's length as created (munmap/mprotect "to the end" means up to there)."""


@dataclass(eq=False)
class VMA:
    """One hugetlb VMA piece ``[start, end)`` (virtual pages of its scenario mapping)."""

    mm: Process
    inode: Inode
    start: int
    end: int
    pgoff: int
    shared: bool
    """VM_MAYSHARE: the inode's map holds the reservations."""
    noreserve: bool
    writable: bool
    maywrite: bool = True
    """VM_MAYWRITE: false only for a shm segment attached with SHM_RDONLY."""
    resv: PrivateResv | None = None
    owner: bool = False
    """HPAGE_RESV_OWNER: this VMA made the private reservation."""
    unmapped: bool = False
    """HPAGE_RESV_UNMAPPED: the owner stole a page from this VMA; every fault SIGBUSes."""
    ptes: dict[int, Pte] = field(default_factory=dict)
    """Present PTEs held one by one (the rest are in `blocks` or the inode's blocks)."""
    blocks: FolioBlocks = field(default_factory=FolioBlocks)
    """Anon pages held as blocks of alike folios with their PTEs (`hugetlbsim.model.blocks`)."""

    def file_index(self, page: int) -> int:
        """`vma_hugecache_offset`: the file index of virtual page ``page``."""
        return page - self.start + self.pgoff

    def virtual_page(self, index: int) -> int:
        return index - self.pgoff + self.start

    @property
    def private_owner(self) -> bool:
        """`__vma_private_lock`: a private VMA holding its own reservation map as owner."""
        return not self.shared and self.resv is not None and self.owner
