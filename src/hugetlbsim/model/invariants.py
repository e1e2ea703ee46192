"""The invariants a `System` keeps after every operation, checked by an independent recount.

Each holds on every kernel line the model follows; a violation names what broke, so a wrong
counter is caught at the step that broke it.  Checked: pool arithmetic; subpool bounds; every
map's own invariants; every cached page's index is in its inode's map; pages in use =
Total - Free; every live inode is held by something (a link, a handle, a mapping), its
cached runs and i_mmap order keys agree with its page cache and VMAs; each cgroup's fault
and reservation usage equals the charges outstanding in its subtree; and no reservation is
owned by nobody (Rsvd = outstanding reservations + subpool min reserves - pages about to
restore theirs - min reserves released short).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hugetlbsim.model.folio import Folio, FolioBlock
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.inode import Inode
from hugetlbsim.model.resv_map import FileRegion
from hugetlbsim.model.snapshot import cached_runs
from hugetlbsim.model.vma import VMA

if TYPE_CHECKING:
    from hugetlbsim.model.system import System

__all__ = ["check_invariants"]


def check_invariants(system: System) -> None:
    """Assert what must hold after every operation (AssertionError names what broke)."""
    h = system.hstate
    h.check()
    for mount in system.mounts.values():
        sp = mount.spool
        if sp is not None:
            assert sp.used_hpages >= 0 and sp.rsv_hpages >= 0, f"subpool {mount.name}: {sp}"
            assert sp.max_hpages == -1 or sp.used_hpages <= sp.max_hpages, f"{sp}"
            assert sp.min_hpages == -1 or sp.rsv_hpages <= sp.min_hpages, f"{sp}"
    for cg in system.cgroups.values():
        cg.check()
    vmas = [v for p in system.procs.values() for pieces in p.maps.values() for v in pieces]
    folios = system.folios()
    blocks = system.blocks()
    outstanding = 0
    live = set(vmas)
    linked: dict[Inode, set[VMA]] = {}
    for inode in system.inodes:
        inode.resv_map.check()
        assert inode.in_use, f"{inode.name}: nothing holds it, yet it was not evicted"
        pages = len(inode.page_cache) + inode.blocks.pages
        assert inode.i_blocks == pages, f"{inode.name}: i_blocks off"
        regions = inode.resv_map.regions()
        cached = sorted(inode.page_cache)
        _check_blocks(inode, live)
        runs = _merged(cached_runs(cached), [[b.first, b.end] for b in inode.blocks])
        assert sum(t - f for f, t in runs) == pages, f"{inode.name}: a block overlaps a folio"
        assert inode.cached.runs() == runs, f"{inode.name}: cached runs off"
        _check_i_mmap(inode)
        index = _first_uncovered(cached, regions)
        assert index is None, (
            f"{inode.name}: page {index} is cached but not in the reservation map")
        for b in inode.blocks:
            assert inode.resv_map.region_count(b.first, b.end) == b.pages, (
                f"{inode.name}: block [{b.first}, {b.end}) is cached but not all in the map")
        outstanding += sum(r.to - r.from_ for r in regions)
        outstanding -= pages
        linked[inode] = set(inode.i_mmap)
        assert linked[inode] <= live, f"{inode.name}: i_mmap has dead VMAs"
    memberships = 0
    for vma in vmas:
        if vma.inode not in linked:
            linked[vma.inode] = set(vma.inode.i_mmap)
        assert vma in linked[vma.inode], f"a VMA of {vma.inode.name} is not in its i_mmap"
        if vma.resv is not None:
            vma.resv.map.check()
        if vma.private_owner:
            assert vma.resv is not None
            f, t = vma.file_index(vma.start), vma.file_index(vma.end)
            outstanding += (t - f) - vma.resv.map.region_count(f, t)
        own, anon = vma.inode.blocks, vma.blocks
        for page, pte in vma.ptes.items():
            assert vma.start <= page < vma.end, "PTE outside its VMA"
            assert pte.folio.mapcount > 0
            if own:
                block = own.at(vma.file_index(page))
                assert block is None or vma not in block.vmas, "a PTE over its VMA's block"
            assert not anon or anon.at(page) is None, "a PTE over its VMA's anon block"
        if anon:
            _check_anon_blocks(vma)
            memberships += len(anon.blocks)
    _check_anon_mappers(blocks, memberships)
    pending = (sum(1 for f in folios if f.restore_reserve)
               + sum(b.pages for b in blocks if b.restore_reserve))
    min_rsv = sum(sp.rsv_hpages for sp in system.subpools if sp.min_hpages != -1)
    short = sum(sp.released_short for sp in system.subpools)
    assert h.resv_huge_pages == outstanding + min_rsv - pending - short + h.resv_drift, (
        f"Rsvd {h.resv_huge_pages} != outstanding reservations {outstanding} + subpool "
        f"min reserves {min_rsv} - pages about to restore theirs {pending} - min reserves "
        f"released but not held {short} + older releases' leaks {h.resv_drift}")
    in_use = len(folios) + sum(b.pages for b in blocks)
    assert in_use == h.nr_huge_pages - h.free_huge_pages, (
        f"{in_use} pages in use but Total - Free = {h.nr_huge_pages - h.free_huge_pages}")
    _check_charges(system, folios, blocks, vmas)


def _check_blocks(inode: Inode, live: set[VMA]) -> None:
    """Sorted, disjoint blocks, each within a live shared VMA of this inode that maps it."""
    blocks = inode.blocks
    assert blocks.firsts == [b.first for b in blocks], f"{inode.name}: block index off"
    assert blocks.pages == sum(b.pages for b in blocks), f"{inode.name}: block pages off"
    end = None
    for b in blocks:
        assert b.first < b.end and (end is None or end <= b.first), (
            f"{inode.name}: blocks overlap or are empty")
        end = b.end
        assert not b.anon and b.hstate is inode.hstate and b.spool is inode.spool, (
            f"{inode.name}: block")
        assert len(set(b.vmas)) == len(b.vmas), f"{inode.name}: a block mapped twice by a VMA"
        for vma in b.vmas:
            assert vma in live and vma.shared and vma.inode is inode, (
                f"{inode.name}: a block mapped by a VMA that cannot map it")
            assert vma.file_index(vma.start) <= b.first and b.end <= vma.file_index(vma.end), (
                f"{inode.name}: a block beyond its VMA")


def _check_anon_blocks(vma: VMA) -> None:
    """Sorted, disjoint anon blocks of a private VMA, inside it."""
    blocks = vma.blocks
    assert not vma.shared, "an anon block in a shared VMA"
    assert blocks.firsts == [b.first for b in blocks], "anon block index off"
    assert blocks.pages == sum(b.pages for b in blocks), "anon block pages off"
    end = vma.start
    for b in blocks:
        assert b.anon and end <= b.first < b.end, "anon blocks overlap"
        assert b.hstate is vma.inode.hstate and b.spool is vma.inode.spool, "anon block"
        end = b.end
    assert end <= vma.end, "an anon block beyond its VMA"


def _check_anon_mappers(blocks: list[FolioBlock], memberships: int) -> None:
    """Each anon block is in the index of every VMA mapping it, once, and in no other: its
    mappers' indexes hold it, and the indexes hold as many entries as all blocks have
    mappers (O(mappers), not O(mappers x VMAs))."""
    mapped = 0
    for b in blocks:
        if b.anon:
            assert len(set(b.vmas)) == len(b.vmas), "an anon block mapped twice by a VMA"
            assert all(v.blocks.at(b.first) is b for v in b.vmas), "an anon block lost a mapper"
            mapped += len(b.vmas)
    assert mapped == memberships, "an anon block in the index of a VMA that does not map it"


def _merged(runs: list[list[int]], more: list[list[int]]) -> list[list[int]]:
    """Two lists of disjoint half-open runs as one sorted list of maximal runs."""
    out: list[list[int]] = []
    for f, t in sorted(runs + more):
        if out and out[-1][1] >= f:
            out[-1][1] = max(out[-1][1], t)
        else:
            out.append([f, t])
    return out

def _check_i_mmap(inode: Inode) -> None:
    """The i_mmap's order keys: sorted, one per VMA, each VMA's first index first."""
    i_mmap = inode.i_mmap
    assert len(i_mmap.keys) == len(i_mmap.vmas) == len(i_mmap.order), f"{inode.name}: i_mmap"
    for n, (key, vma) in enumerate(zip(i_mmap.keys, i_mmap.vmas, strict=True)):
        assert i_mmap.order[vma] == key and key[0] == vma.file_index(vma.start), (
            f"{inode.name}: i_mmap key of a VMA off")
        assert n == 0 or i_mmap.keys[n - 1] < key, f"{inode.name}: i_mmap out of order"


def _first_uncovered(indexes: list[int], regions: list[FileRegion]) -> int | None:
    """The first of the sorted ``indexes`` that no region covers (one walk of both)."""
    walk = iter(regions)
    region = next(walk, None)
    for index in indexes:
        while region is not None and region.to <= index:
            region = next(walk, None)
        if region is None or region.from_ > index:
            return index
    return None


def _check_charges(system: System, folios: list[Folio], blocks: list[FolioBlock],
                   vmas: list[VMA]) -> None:
    """Each cgroup's usage is the sum of the charges outstanding in its subtree.

    Charges are gathered once per owner (pages, file regions carrying a cgroup, private
    owner VMAs) and added to every ancestor, removed cgroups included.
    """
    fault: dict[HugetlbCgroup, int] = {}
    rsvd: dict[HugetlbCgroup, int] = {}
    memory: dict[HugetlbCgroup, int] = {}

    def charge(table: dict[HugetlbCgroup, int], owner: HugetlbCgroup | None,
               pages: int) -> None:
        while owner is not None:
            table[owner] = table.get(owner, 0) + pages
            owner = owner.parent

    for folio in folios:
        charge(fault, folio.cgroup, 1)
        charge(rsvd, folio.cgroup_rsvd, 1)
        charge(memory, folio.memcg, 1)
    for block in blocks:
        charge(fault, block.cgroup, block.pages)
        charge(rsvd, block.cgroup_rsvd, block.pages)
        charge(memory, block.memcg, block.pages)
    for inode in system.inodes:
        for r in inode.resv_map.regions():
            if isinstance(r.info, HugetlbCgroup):
                charge(rsvd, r.info, r.to - r.from_)
    for v in vmas:
        if v.private_owner and v.resv is not None:
            charge(rsvd, v.resv.cgroup, v.end - v.start)
    for cg in system.cgroups.values():
        assert cg.fault.usage == fault.get(cg, 0), (
            f"{cg.name}: fault usage {cg.fault.usage} != {fault.get(cg, 0)}")
        assert cg.rsvd.usage == rsvd.get(cg, 0), (
            f"{cg.name}: rsvd usage {cg.rsvd.usage} != {rsvd.get(cg, 0)}")
        if cg.memory is not None:
            assert cg.memory.usage == memory.get(cg, 0), (
                f"{cg.name}: memory {cg.memory.usage} != {memory.get(cg, 0)}")
        if system.cgroup_interface == "v2" and cg is not system.root:
            assert not (cg.children and cg.nr_tasks), (
                f"{cg.name}: a v2 cgroup with children holds {cg.nr_tasks} processes")

