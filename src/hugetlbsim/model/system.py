"""The `System` facade: one method per scenario-format operation, on the model.

It holds what the kernel's HugeTLB accounting holds (the pool, mounts and their subpools, the
hugetlb cgroup tree, inodes, processes and their mappings) and applies each operation through
the flows below it, Linux 6.18 semantics.  Kernel-level failures come back as results
(``"ENOMEM"``, ``"SIGBUS"``...), with `last_explanation` saying which check refused; calling it
wrongly (an unknown process or mapping) raises `ScenarioMisuse`.  Names whose introducing step
failed are remembered as absent and get the kernel's answer for an absent object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from hugetlbsim.model.blocks import vma_blocks, write_protect
from hugetlbsim.model.bulk import fault_range
from hugetlbsim.model.errors import KernelError, KernelLacks, ScenarioMisuse
from hugetlbsim.model.fileops import (
    check_fallocate_args,
    evict_inode,
    hugetlb_vmtruncate,
    hugetlbfs_fallocate,
    hugetlbfs_punch_hole,
)
from hugetlbsim.model.folio import Folio, FolioBlock
from hugetlbsim.model.hstate import HState
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup, PageCounter
from hugetlbsim.model.inode import Inode, vma_interval_tree_insert
from hugetlbsim.model.invariants import check_invariants
from hugetlbsim.model.kernels import MEMCG_HUGETLB, Kernel
from hugetlbsim.model.kernels import kernel as default_kernel
from hugetlbsim.model.limits import (
    check_mmap_range,
    check_shm_size,
    limit_ceiling,
    limit_pages,
    page_bytes,
)
from hugetlbsim.model.mm import carve, piece
from hugetlbsim.model.reserve import hugetlb_reserve_pages
from hugetlbsim.model.resv_map import Policy, ResvMap
from hugetlbsim.model.snapshot import snapshot
from hugetlbsim.model.subpool import HugepageSubpool
from hugetlbsim.model.unmap import free_batch, unmap_vmas, zap_pages
from hugetlbsim.model.vma import VMA, Process, Pte

__all__ = ["SYSTEM_POLICIES", "Mount", "Shm", "System"]

SYSTEM_POLICIES: tuple[Policy, ...] = ("6.18", "v7")
"""Region policies a whole system can run: "legacy" predates the per-region cgroup uncharge
info, so its merges would move reservation charges between cgroups."""



def _interface(cgroups: str, memory_accounting: bool, kernel: Kernel) -> str:
    """Check the cgroup interface a System is asked for (``v1``/``v2``) and return it."""
    if cgroups not in ("v1", "v2"):
        raise ValueError(f"cgroups must be v1 or v2, not {cgroups!r}")
    if memory_accounting and cgroups != "v2":
        raise ValueError("memory accounting is a cgroup v2 mount option")
    if memory_accounting and not kernel.has(MEMCG_HUGETLB):
        raise KernelLacks(f"kernel {kernel.name} has no memory_hugetlb_accounting (cgroup2 "
                          f"refuses the mount option before 6.7, commit "
                          f"{MEMCG_HUGETLB.commit})")
    return cgroups


@dataclass(eq=False)
class Mount:
    """A hugetlbfs mount: its subpool (None without size=/min_size=) and its files."""

    name: str
    spool: HugepageSubpool | None
    inodes: dict[Inode, None] = field(default_factory=dict)
    """Its files' inodes, in creation order (a dict: removing one costs O(1))."""


@dataclass(eq=False)
class Shm:
    """A SysV shm segment: its inode, until IPC_RMID."""

    inode: Inode
    size: int


class System:
    """Everything HugeTLB accounting holds, changed exactly as Linux 6.18 changes it."""

    OPERATIONS: Final = frozenset({
        "pool", "mount", "umount", "cgroup", "rmdir", "spawn", "attach", "fork", "exit",
        "create", "memfd", "truncate", "fallocate", "punch", "close", "unlink", "shmget",
        "shmrm", "mmap", "munmap", "mprotect", "touch", "madvise"})
    """The methods `apply` dispatches to: one per scenario operation, nothing else."""

    def __init__(self, pagesize: str = "2M", pool_pages: int = 0, pool_overcommit: int = 0,
                 policy: Policy = "6.18", kernel: Kernel | None = None,
                 cgroups: str = "v1", memory_accounting: bool = False) -> None:
        if policy not in SYSTEM_POLICIES:
            raise ValueError(f"policy {policy!r} cannot run a whole system: use "
                             f"{' or '.join(SYSTEM_POLICIES)}")
        self.pagesize = pagesize
        self.policy: Policy = policy
        self.hstate = HState(gigantic=pagesize == "1G", kernel=kernel or default_kernel())
        self.cgroup_interface = _interface(cgroups, memory_accounting, self.hstate.kernel)
        """``"v1"`` or ``"v2"``: the hugetlb cgroup files the state shows, and under v2 the
        no-internal-process rule (the root's own processes live in a hidden leaf)."""
        self.memory_accounting = memory_accounting
        """cgroup2's ``memory_hugetlb_accounting``: pages are charged to memory cgroups too."""
        self.root = HugetlbCgroup("root", v2=cgroups == "v2",
                                  size_tag="1GB" if pagesize == "1G" else "2MB",
                                  memory=PageCounter() if memory_accounting else None)
        self.root.nr_tasks = 1
        self.root.fault.ceiling = self.root.rsvd.ceiling = limit_ceiling(self._page_bytes)
        self.cgroups: dict[str, HugetlbCgroup] = {"root": self.root}
        self.procs: dict[str, Process] = {"init": Process("init", self.root)}
        self.mounts: dict[str, Mount] = {}
        self.files: dict[str, Inode] = {}
        """Nameable files: linked hugetlbfs files, and any file whose handle is open."""
        self.handles: set[str] = set()
        self.shms: dict[str, Shm] = {}
        self.inodes: dict[Inode, None] = {}
        """Every live inode, in creation order (a dict: removing one costs O(1))."""
        self._mount_of: dict[Inode, Mount] = {}
        self._serial = 0
        """Inodes made so far: each inode's `Inode.serial` is its rank in creation order."""
        self.absent: set[str] = set()
        self.unmounted: set[str] = set()
        """Mounts a successful umount removed (their mount points are gone)."""
        self.subpools: list[HugepageSubpool] = []
        """Every subpool ever mounted (an unmounted one may still be released later)."""
        self.last_explanation: str | None = None
        if pool_pages or pool_overcommit:
            self.pool(pool_pages, pool_overcommit)

    # -- dispatch --------------------------------------------------------------------------

    def apply(self, op: str, args: Mapping[str, Any]) -> str:
        """Run one scenario operation; return its result and keep its explanation."""
        if op not in self.OPERATIONS:
            raise ScenarioMisuse(f"unknown operation {op!r}")
        method: Callable[..., None] = getattr(self, op)
        self.last_explanation = None
        try:
            method(**args)
        except KernelError as err:
            self.last_explanation = err.why
            return err.result
        return "ok"

    # -- pool, mounts, cgroups -------------------------------------------------------------

    def pool(self, pages: int | None = None, overcommit: int | None = None) -> None:
        """Write nr_overcommit_hugepages, then nr_hugepages."""
        if overcommit is not None:
            if self.hstate.gigantic and overcommit:
                raise KernelError("EINVAL", "gigantic (1G) pages cannot be overcommitted")
            self.hstate.nr_overcommit_huge_pages = overcommit
        if pages is not None:
            self.hstate.set_max_huge_pages(pages)

    def mount(self, name: str, size: int | None = None, min_size: int | None = None) -> None:
        """Mount hugetlbfs; size=/min_size= create a subpool (min_size reserves at once)."""
        spool = None
        if size is not None or min_size is not None:
            if size is not None and min_size is not None and min_size > size:
                self._fail(name, "EINVAL", f"min_size ({min_size}) is larger than size ({size})")
            spool = HugepageSubpool.new(self.hstate, -1 if size is None else size,
                                        -1 if min_size is None else min_size)
            if spool is None:
                h = self.hstate
                self._fail(name, "ENOMEM", (
                    f"min_size={min_size} must be reserved at mount but only "
                    f"{h.free_huge_pages - h.resv_huge_pages} pages are free and unreserved "
                    f"and overcommit allows {h.surplus_capacity()} more surplus pages"))
        self.unmounted.discard(name)
        self.mounts[name] = Mount(name, spool)
        if spool is not None:
            self.subpools.append(spool)
        self.absent.discard(name)

    def umount(self, name: str) -> None:
        """Unmount: EBUSY while a file is open or mapped; else every file goes.

        A mount whose mount failed leaves a directory where nothing is mounted (EINVAL, as
        measured: P04c); one already unmounted is a mount point that is gone (ENOENT), and so
        are its files from then on.
        """
        if name in self.unmounted:
            raise KernelError("ENOENT", f"mount {name} was unmounted: its mount point is gone")
        mount = self._lookup(self.mounts, name, "EINVAL", "mount")
        for inode in mount.inodes:
            if inode.files or inode.i_mmap:
                raise KernelError("EBUSY", (
                    f"file {inode.name} is still in use: {inode.files} open handles, "
                    f"{len(inode.i_mmap)} mappings"))
        for inode in mount.inodes:
            self._evict(inode)
            self._mount_of.pop(inode, None)
        for path in [p for p, i in self.files.items() if i in mount.inodes]:
            del self.files[path]
            self.absent.add(path)
        del self.mounts[name]
        self.unmounted.add(name)
        if mount.spool is not None:
            mount.spool.put()

    def cgroup(self, name: str, limit: int | str | None = None,
               rsvd_limit: int | str | None = None) -> None:
        """mkdir the cgroup if missing, then write its fault and reservation limits."""
        cg = self.cgroups.get(name)
        if cg is None:
            parent = self.cgroups.get(name.rpartition("/")[0] or "root")
            if parent is None:
                self._fail(name, "ENOENT", f"the parent of cgroup {name} does not exist")
            if self.cgroup_interface == "v2" and parent is not self.root and parent.nr_tasks:
                # The parent must distribute hugetlb to its new child, and enabling a
                # controller in subtree_control is EBUSY while the cgroup has tasks
                # (cgroup_vet_subtree_control_enable: no internal processes).
                self._fail(name, "EBUSY", (
                    f"cgroup {parent.name} holds {parent.nr_tasks} processes, so under cgroup "
                    f"v2 it cannot distribute the hugetlb controller to a child"))
            cg = HugetlbCgroup.child_of(parent, name)
            self.cgroups[name] = cg
            self.absent.discard(name)
        for which, value in (("limit", limit), ("rsvd_limit", rsvd_limit)):
            if value is None:
                continue
            pages = None if value == "max" else limit_pages(int(value), self._page_bytes)
            if not cg.set_limit(which, pages):
                counter = cg.fault if which == "limit" else cg.rsvd
                raise KernelError("EBUSY", (
                    f"cannot set {name}'s {which} to {pages}: {counter.usage} pages are charged"))

    def rmdir(self, cgroup: str) -> None:
        """Remove a cgroup: fault charges move to the parent, reservation charges stay."""
        cg = self._lookup(self.cgroups, cgroup, "ENOENT", "cgroup")
        if cg.nr_tasks or cg.children:
            kids = ", ".join(c.name for c in cg.children)
            raise KernelError("EBUSY", (
                f"cgroup {cgroup} still has {cg.nr_tasks} tasks and {len(cg.children)} child "
                f"cgroups" + (f" ({kids})" if kids else "")))
        assert cg.parent is not None
        for folio in self.folios():
            if folio.cgroup is cg:
                folio.cgroup = cg.parent
        for block in self.blocks():
            if block.cgroup is cg:
                block.cgroup = cg.parent
        cg.css_offline()
        del self.cgroups[cgroup]
        self.absent.add(cgroup)  # a later step naming it meets a directory that is gone

    # -- processes -------------------------------------------------------------------------

    def spawn(self, proc: str, cgroup: str = "root") -> None:
        try:
            cg = self._lookup(self.cgroups, cgroup, "ENOENT", "cgroup")
        except KernelError as err:  # the process never started: it is absent
            self._fail(proc, err.result, err.why)
        if self._distributes(cg):
            self._fail(proc, "EBUSY", self._no_internal(cg))
        self.procs[proc] = Process(proc, cg)
        cg.nr_tasks += 1

    def attach(self, proc: str, cgroup: str) -> None:
        """Move a task: its existing charges stay where they are."""
        task = self._proc(proc)
        cg = self._lookup(self.cgroups, cgroup, "ENOENT", "cgroup")
        if self._distributes(cg):
            raise KernelError("EBUSY", self._no_internal(cg))
        task.cgroup.nr_tasks -= 1
        task.cgroup = cg
        cg.nr_tasks += 1

    def fork(self, proc: str, child: str) -> None:
        """fork: the child gets every mapping, but private ones without their reservation map.

        Private PTEs are write-protected in both processes and the anon pages shared.  A parent
        that does not exist (its spawn failed) forks nothing: the child is absent too.
        """
        try:
            parent = self._proc(proc)
        except KernelError as err:
            self._fail(child, err.result, err.why)
        kid = Process(child, parent.cgroup)
        parent.cgroup.nr_tasks += 1
        for name, pieces in parent.maps.items():
            copies = []
            for vma in pieces:
                copy = VMA(kid, vma.inode, vma.start, vma.end, vma.pgoff, vma.shared,
                           vma.noreserve, vma.writable, maywrite=vma.maywrite)
                for block in vma_blocks(vma, vma.start, vma.end):
                    block.vmas.append(copy)  # shared: PTEs copied as they are
                for block in vma.blocks:
                    block.writable = False  # private: write-protected in both
                    block.vmas.append(copy)
                    copy.blocks.add(block)
                for page, pte in vma.ptes.items():
                    if not vma.shared:
                        pte.writable = False
                    copy.ptes[page] = Pte(pte.folio, pte.writable)
                    pte.folio.mapcount += 1
                vma_interval_tree_insert(vma.inode, copy, after=vma)
                copies.append(copy)
            kid.maps[name] = copies
            kid.lengths[name] = parent.lengths[name]
        self.procs[child] = kid

    def exit(self, proc: str) -> None:
        """The process exits: all its mappings are zapped, then closed."""
        task = self._proc(proc)
        vmas = [vma for pieces in task.maps.values() for vma in pieces]
        unmap_vmas((vma, vma.start, vma.end) for vma in vmas)
        task.maps.clear()
        task.cgroup.nr_tasks -= 1
        del self.procs[proc]
        self._reap(vma.inode for vma in vmas)

    # -- files -------------------------------------------------------------------------------

    def create(self, file: str, size: int | None = None, proc: str = "init") -> None:
        """open(O_CREAT) a hugetlbfs file (the scenario keeps the handle), then ftruncate."""
        mount = self.mounts.get(file.partition("/")[0])
        if mount is None:
            self._fail(file, "ENOENT", f"mount {file.partition('/')[0]} does not exist")
        inode = self._new_inode(file, mount.spool, linked=True, files=1)
        mount.inodes[inode] = None
        self._mount_of[inode] = mount
        self._open(file, inode)
        if size is not None:
            hugetlb_vmtruncate(inode, size)

    def memfd(self, file: str, size: int | None = None, proc: str = "init") -> None:
        """memfd_create(MFD_HUGETLB): an unlinked file on the internal mount, no subpool."""
        inode = self._new_inode(file, None, linked=False, files=1)
        self._open(file, inode)
        if size is not None:
            hugetlb_vmtruncate(inode, size)

    def truncate(self, file: str, size: int, proc: str = "init") -> None:
        hugetlb_vmtruncate(self._file(file), size)

    def fallocate(self, file: str, offset: int, length: int, keep_size: bool = False,
                  proc: str = "init") -> None:
        """fallocate as ``proc`` (charged to its cgroup): a process that does not exist calls
        nothing (ESRCH), whatever the file and arguments."""
        task = self._proc(proc)
        inode = self._file(file)
        check_fallocate_args(offset, length)
        hugetlbfs_fallocate(inode, offset, length, keep_size, task, task.cgroup)

    def punch(self, file: str, offset: int, length: int, proc: str = "init") -> None:
        inode = self._file(file)
        check_fallocate_args(offset, length)
        hugetlbfs_punch_hole(inode, offset, length)

    def close(self, file: str) -> None:
        """Close the scenario's handle; an unlinked, unmapped file goes with it."""
        inode = self._file(file)
        if file in self.handles:
            self.handles.discard(file)
            inode.files -= 1
        if not inode.linked:
            del self.files[file]
        self._reap((inode,))

    def unlink(self, file: str) -> None:
        """Unlink the name; the inode lives while a handle or a mapping holds it."""
        inode = self._file(file)
        if not inode.linked:
            raise KernelError("ENOENT", f"{file} has no name to unlink")
        inode.linked = False
        if file not in self.handles:
            del self.files[file]
        self._reap((inode,))

    # -- SysV shm -------------------------------------------------------------------------

    def shmget(self, shm: str, size: int, noreserve: bool = False, proc: str = "init") -> None:
        """shmget(SHM_HUGETLB): reserve the whole segment now, charged to ``proc``'s cgroup.

        A process that does not exist calls nothing (ESRCH), whatever the arguments.
        """
        try:
            task = self._proc(proc)
        except KernelError as err:
            self._fail(shm, err.result, err.why)
        if size <= 0:
            self._fail(shm, "EINVAL", "a shm segment needs at least one page")
        try:
            check_shm_size(size, self._page_bytes)
        except KernelError as err:
            self._fail(shm, err.result, err.why)
        inode = self._new_inode(f"shm:{shm}", None, linked=False, files=1)
        inode.i_size = size
        if not noreserve:
            try:
                hugetlb_reserve_pages(inode, 0, size, None, task.cgroup)
            except KernelError as err:
                del self.inodes[inode]
                self._fail(shm, err.result, err.why)
        self.shms[shm] = Shm(inode, size)
        self.absent.discard(shm)

    def shmrm(self, shm: str) -> None:
        """IPC_RMID: the segment goes when its last attachment goes."""
        seg = self._lookup(self.shms, shm, "EINVAL", "shm")
        seg.inode.files -= 1
        del self.shms[shm]
        self._reap((seg.inode,))

    # -- mappings -------------------------------------------------------------------------

    def mmap(self, proc: str, map: str, file: str | None = None, shm: str | None = None,
             anon: bool = False, offset: int = 0, length: int | None = None,
             shared: bool = True, noreserve: bool = False, writable: bool = True,
             populate: bool = False) -> None:
        """mmap a file, an anonymous MAP_HUGETLB area or (shmat) a shm segment."""
        task = self._proc(proc)
        if shm is not None:
            seg = self.shms.get(shm)
            if seg is None:
                self._fail(map, "EINVAL", f"shm segment {shm} does not exist")
            inode, offset, length, shared, noreserve = seg.inode, 0, seg.size, True, True
        elif anon:
            inode = self._new_inode(f"anon:{proc}/{map}", None, linked=False, files=0)
            inode.i_size = length or 0
        else:
            assert file is not None, "mmap needs one of file, shm, anon"
            if file not in self.files:
                self._fail(map, "ENOENT", f"file {file} does not exist")
            inode = self.files[file]
        if not length:
            if anon:
                del self.inodes[inode]
            self._fail(map, "EINVAL", "a mapping needs at least one page")
        vma = VMA(task, inode, 0, length, offset, shared, noreserve, writable,
                  maywrite=shm is None or writable)
        try:
            check_mmap_range(offset, length, self._page_bytes)
            hugetlb_reserve_pages(inode, offset, offset + length, vma, task.cgroup)
        except KernelError as err:
            if anon:
                del self.inodes[inode]
            self._fail(map, err.result, err.why)
        if file is not None and writable and inode.i_size < offset + length:
            inode.i_size = offset + length
        vma_interval_tree_insert(inode, vma)
        task.maps[map] = [vma]
        task.lengths[map] = length
        self.absent.discard(map)
        if populate:
            self._mm_populate(vma, write=writable and not shared)

    def _mm_populate(self, vma: VMA, write: bool) -> None:
        """MAP_POPULATE (`__mm_populate`): fault every page, ignoring failures.

        After a round that faulted some pages, the kernel tries again from the page that
        failed, so that page is attempted twice before the rest of the VMA is skipped (each
        attempt can count in failcnt or leak subpool capacity; fuzz seeds 679, 7261).
        """
        start = vma.start
        at = [start]
        while start < vma.end:
            try:
                fault_range(vma, start, vma.end, write, vma.mm.cgroup, at)
                return
            except KernelError:
                if at[0] == start:
                    return
                start = at[0]

    def munmap(self, proc: str, map: str, offset: int = 0, length: int | None = None) -> None:
        """Unmap part or all of a mapping (offsets relative to the mapping as created)."""
        task = self._proc(proc)
        if map not in task.maps:
            self._absent_map(map, "ok")
            return
        end = self._map_end(task, map) if length is None else offset + length
        pieces = carve(task.maps[map], offset, end)
        unmap_vmas((vma, vma.start, vma.end) for vma in pieces)
        # A munmap of the whole mapping frees its name; one unmapped piece by piece keeps it
        # (with no pieces left): later steps on it meet holes, as on the kernel.
        task.maps[map] = [v for v in task.maps[map] if v not in pieces]
        if offset == 0 and end >= task.lengths[map]:
            del task.maps[map], task.lengths[map]
        self._reap(vma.inode for vma in pieces)

    def mprotect(self, proc: str, map: str, offset: int = 0, length: int | None = None,
                 writable: bool = True) -> None:
        """Change protection piece by piece; ENOMEM at the first unmapped page.

        Only a piece whose protection changes is split (`mprotect_fixup` leaves a VMA that
        already has the flags alone, so it stays one VMA: fuzz seed 301897).
        """
        task = self._proc(proc)
        if map not in task.maps:
            self._absent_map(map, "ENOMEM")
        end = self._map_end(task, map) if length is None else offset + length
        covered = offset
        for vma in sorted(task.maps[map], key=lambda v: v.start):
            if vma.end <= offset or vma.start >= end:
                continue
            if vma.start > covered:
                break
            covered = min(vma.end, end)
            if vma.writable == writable:
                continue
            if writable and not vma.maywrite:
                raise KernelError("EACCES", f"{map} is a read-only (SHM_RDONLY) attachment")
            part = carve(task.maps[map], max(vma.start, offset), covered)[0]
            part.writable = writable
            if not writable:
                write_protect(part)  # first: the pages it explodes get PTEs of their own
                for pte in part.ptes.values():
                    pte.writable = False
        if covered < end:
            raise KernelError("ENOMEM", f"page {covered} of {map} is not mapped")

    def touch(self, proc: str, map: str, page: int, count: int = 1, write: bool = True) -> None:
        """Fault pages in order, as MADV_POPULATE_WRITE/READ would."""
        task = self._proc(proc)
        if map not in task.maps:
            self._absent_map(map, "SIGSEGV")
        p, end = page, page + count
        while p < end:  # piece by piece: a VMA's pages share its checks (`fault_range`)
            vma = piece(task.maps[map], p)
            if vma is None:
                raise KernelError("SIGSEGV", f"page {p} of {map} is not mapped")
            if write and not vma.writable:
                raise KernelError("SIGSEGV", f"page {p} of {map} is mapped read-only")
            stop = min(vma.end, end)
            fault_range(vma, p, stop, write, task.cgroup)
            p = stop

    def madvise(self, proc: str, map: str, page: int, count: int = 1,
                advice: str = "dontneed") -> None:
        """MADV_DONTNEED zaps the pages; MADV_REMOVE punches a hole in the shared file."""
        task = self._proc(proc)
        if map not in task.maps:
            self._absent_map(map, "ENOMEM")
        end = page + count
        hole = False
        covered = page
        for vma in sorted(task.maps[map], key=lambda v: v.start):
            lo, hi = max(vma.start, page), min(vma.end, end)
            if lo >= hi:
                continue
            hole |= lo > covered
            covered = hi
            if advice == "dontneed":
                freed: list[Folio | FolioBlock] = []
                zap_pages(vma, lo, hi, freed)
                free_batch(freed)
            elif not (vma.shared and vma.maywrite):
                raise KernelError("EACCES", "MADV_REMOVE needs a shared writable mapping")
            else:
                hugetlbfs_punch_hole(vma.inode, vma.file_index(lo), hi - lo)
        if hole or covered < end:
            raise KernelError("ENOMEM", f"part of pages {page}..{end - 1} of {map} is not mapped")

    # -- observation ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every counter of the trace ``state``, plus what only the model knows (`snapshot`)."""
        return snapshot(self)

    def check_invariants(self) -> None:
        """Assert what must hold after every operation (`invariants`)."""
        check_invariants(self)

    # -- helpers --------------------------------------------------------------------------

    def _distributes(self, cg: HugetlbCgroup) -> bool:
        """Under v2, a non-root cgroup with children has hugetlb in its subtree_control, and
        cgroup_migrate_vet_dst refuses it any process (the root's go to its hidden leaf)."""
        return self.cgroup_interface == "v2" and cg is not self.root and bool(cg.children)

    @staticmethod
    def _no_internal(cg: HugetlbCgroup) -> str:
        kids = ", ".join(c.name for c in cg.children)
        return (f"cgroup {cg.name} has child cgroups ({kids}), so under cgroup v2 it holds no "
                f"processes")

    @property
    def _page_bytes(self) -> int:
        return page_bytes(self.hstate.gigantic)

    def _fail(self, name: str, result: str, why: str) -> NoReturn:
        """An introducing step failed: the name is absent from now on."""
        self.absent.add(name)
        raise KernelError(result, why)

    def _absent_map(self, map: str, result: str) -> None:
        if map not in self.absent:
            raise ScenarioMisuse(f"unknown mapping {map!r}")
        if result != "ok":
            raise KernelError(result, f"mapping {map} does not exist (its mmap failed)")

    def _lookup(self, table: Mapping[str, Any], name: str, result: str, kind: str) -> Any:
        if name in table:
            return table[name]
        if name in self.absent:
            raise KernelError(result, f"{kind} {name} does not exist (its creation failed)")
        raise ScenarioMisuse(f"unknown {kind} {name!r}")

    def _proc(self, name: str) -> Process:
        task: Process = self._lookup(self.procs, name, "ESRCH", "process")
        return task

    def _file(self, name: str) -> Inode:
        inode: Inode = self._lookup(self.files, name, "ENOENT", "file")
        return inode

    def _new_inode(self, name: str, spool: HugepageSubpool | None, *, linked: bool,
                   files: int) -> Inode:
        inode = Inode(name, self.hstate, spool, ResvMap(self.policy), linked=linked,
                      files=files)
        self._serial += 1
        inode.serial = self._serial
        self.inodes[inode] = None
        return inode

    def _open(self, name: str, inode: Inode) -> None:
        self.files[name] = inode
        self.handles.add(name)
        self.absent.discard(name)

    def _evict(self, inode: Inode) -> None:
        evict_inode(inode)
        del self.inodes[inode]

    def _reap(self, touched: Iterable[Inode]) -> None:
        """Evict every inode nothing holds any more (last close, unmap, detach or RMID).

        Only an inode the operation let go of can have become unused (``touched``: after
        every operation each live inode is in use, which the invariants check), so only those
        are looked at; they are evicted in creation order, as a walk of every inode would.
        """
        unused = {inode for inode in touched if inode in self.inodes and not inode.in_use}
        for inode in sorted(unused, key=lambda i: i.serial):
            self._evict(inode)
            mount = self._mount_of.pop(inode, None)
            if mount is not None:
                mount.inodes.pop(inode, None)

    def blocks(self) -> list[FolioBlock]:
        """Every block of alike pages (`hugetlbsim.model.blocks`): the rest of the pages in
        use."""
        anon = {id(block): block for task in self.procs.values()
                for pieces in task.maps.values() for vma in pieces for block in vma.blocks}
        return [block for inode in self.inodes for block in inode.blocks] + list(anon.values())

    def folios(self) -> list[Folio]:
        """Every page in use held as a single folio (the hstate's active list, blocks
        aside)."""
        seen: dict[int, Folio] = {}
        for inode in self.inodes:
            for folio in inode.page_cache.values():
                seen[id(folio)] = folio
        for task in self.procs.values():
            for pieces in task.maps.values():
                for vma in pieces:
                    for pte in vma.ptes.values():
                        seen[id(pte.folio)] = pte.folio
        return list(seen.values())

    def _map_end(self, task: Process, map: str) -> int:
        """The end of the mapping as created."""
        return task.lengths[map]
