"""Blocks of alike pages (`hugetlbsim.model.blocks`): one object per stride, exploded where a
page starts to differ, and caught by the invariants when they disagree with the counters.

That blocks change no result is `tests/test_bulk.py`'s differential check (strides off and
on, every kernel point); here: that they are really used, and that the recount sees them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hugetlbsim.model.folio import FolioBlock
from hugetlbsim.model.system import System

PAGES = 1 << 20
"""A 2 TB file of 2 MB pages: held page by page, it would take seconds and gigabytes."""


def _touched(pages: int = PAGES) -> System:
    system = System(pool_pages=pages)
    system.apply("mount", {"name": "hp"})
    system.apply("create", {"file": "hp/f", "size": pages})
    system.apply("mmap", {"proc": "init", "map": "m", "file": "hp/f", "length": pages})
    assert system.apply("touch", {"proc": "init", "map": "m", "page": 0, "count": pages}) == "ok"
    return system


def test_a_long_touch_is_one_folio_and_one_block() -> None:
    system = _touched()
    assert len(system.folios()) == 1  # the first page goes through hugetlb_fault
    [block] = system.blocks()
    assert (block.first, block.end, len(block.vmas)) == (1, PAGES, 1)
    # Free = pool - touched, reservations all consumed, each page charged once.
    assert (system.hstate.free_huge_pages, system.hstate.resv_huge_pages) == (0, 0)
    assert system.root.fault.usage == PAGES
    system.check_invariants()


def test_unmap_and_truncate_act_on_the_block_whole() -> None:
    system = _touched()
    assert system.apply("munmap", {"proc": "init", "map": "m"}) == "ok"
    [block] = system.blocks()
    assert block.vmas == []  # still cached, no longer mapped: nothing freed
    assert system.hstate.free_huge_pages == 0
    assert system.apply("truncate", {"file": "hp/f", "size": 0}) == "ok"
    assert system.blocks() == [] and system.folios() == []
    assert system.hstate.free_huge_pages == PAGES and system.root.fault.usage == 0
    system.check_invariants()


def test_a_second_mapping_explodes_only_the_page_it_maps() -> None:
    system = _touched(64)
    system.apply("spawn", {"proc": "q"})
    system.apply("mmap", {"proc": "q", "map": "m", "file": "hp/f", "length": 64})
    assert system.apply("touch", {"proc": "q", "map": "m", "page": 10}) == "ok"
    blocks = system.blocks()
    assert [(b.first, b.end) for b in blocks] == [(1, 10), (11, 64)]
    assert len(system.folios()) == 2 and system.hstate.free_huge_pages == 0
    system.check_invariants()


def _corrupt_cgroup(system: System, block: FolioBlock) -> None:
    system.apply("cgroup", {"name": "a"})
    block.cgroup = system.cgroups["a"]


def _corrupt_end(system: System, block: FolioBlock) -> None:
    block.end -= 1
    system.files["hp/f"].blocks.pages -= 1


def _corrupt_vma(system: System, block: FolioBlock) -> None:
    block.vmas.clear()  # the VMA still maps nothing there: its pages look unmapped
    system.files["hp/f"].page_cache[block.first] = system.folios()[0]


@pytest.mark.parametrize("corrupt", [_corrupt_cgroup, _corrupt_end, _corrupt_vma],
                         ids=["charged-elsewhere", "page-lost", "page-twice"])
def test_the_recount_catches_a_wrong_block(corrupt: Callable[[System, FolioBlock], None]) -> None:
    system = _touched(64)
    [block] = system.blocks()
    corrupt(system, block)
    with pytest.raises(AssertionError):
        system.check_invariants()


def test_fallocate_and_punch_act_on_blocks_whole() -> None:
    """fallocate of a fresh file: every page NEEDED, charged to the reservation counter and
    kept by the page, an unreserved page each (none consumed); punch frees them all and
    drops their indexes, so nothing is left reserved."""
    system = System(pool_pages=PAGES)
    system.apply("mount", {"name": "hp"})
    system.apply("create", {"file": "hp/f"})
    assert system.apply("fallocate", {"file": "hp/f", "offset": 0, "length": PAGES}) == "ok"
    assert len(system.folios()) == 1 and len(system.blocks()) == 1
    h = system.hstate
    assert (h.free_huge_pages, h.resv_huge_pages) == (0, 0)
    assert system.root.fault.usage == system.root.rsvd.usage == PAGES
    system.check_invariants()
    assert system.apply("punch", {"file": "hp/f", "offset": 0, "length": PAGES}) == "ok"
    assert system.blocks() == [] and system.files["hp/f"].resv_map.regions() == []
    assert (h.free_huge_pages, h.resv_huge_pages, system.root.rsvd.usage) == (PAGES, 0, 0)
    system.check_invariants()


def test_a_private_touch_is_one_anon_block_and_its_unmap_restores_nothing_twice() -> None:
    """A private anon mapping reserves every page at mmap; a write touch consumes them all
    (Rsvd back to 0) into one anon block; munmap frees every page and Rsvd stays 0."""
    system = System(pool_pages=PAGES)
    system.apply("mmap", {"proc": "init", "map": "m", "anon": True, "shared": False,
                          "length": PAGES})
    assert system.hstate.resv_huge_pages == PAGES
    assert system.apply("touch", {"proc": "init", "map": "m", "page": 0, "count": PAGES}) == "ok"
    [block] = system.blocks()
    assert block.anon and (block.first, block.end) == (1, PAGES)
    assert (system.hstate.free_huge_pages, system.hstate.resv_huge_pages) == (0, 0)
    system.check_invariants()
    assert system.apply("munmap", {"proc": "init", "map": "m"}) == "ok"
    h = system.hstate
    assert (system.blocks(), h.free_huge_pages, h.resv_huge_pages) == ([], PAGES, 0)
    system.check_invariants()


def test_fork_shares_an_anon_block_and_a_cow_takes_one_page_out() -> None:
    """A private owner's 64 touched pages, forked: one block mapped by both (mapcount 2,
    write-protected).  The child's write copies one page: it has no reservation (a child's
    private mapping never does), so it takes the one unreserved free page (Free 1 -> 0) and
    charges it; the block loses that page only."""
    system = System(pool_pages=65)
    system.apply("mmap", {"proc": "init", "map": "m", "anon": True, "shared": False,
                          "length": 64})
    system.apply("touch", {"proc": "init", "map": "m", "page": 0, "count": 64})
    assert system.apply("fork", {"proc": "init", "child": "c"}) == "ok"
    [block] = system.blocks()
    assert len(block.vmas) == 2 and not block.writable
    system.check_invariants()
    assert system.apply("touch", {"proc": "c", "map": "m", "page": 5}) == "ok"
    assert [(b.first, b.end) for b in system.blocks()] == [(1, 5), (6, 64)]
    assert (system.hstate.free_huge_pages, system.root.fault.usage) == (0, 65)
    system.check_invariants()
    assert system.apply("exit", {"proc": "c"}) == "ok"
    assert system.hstate.free_huge_pages == 1  # the child's copy goes; the shared pages stay
    system.check_invariants()


def test_a_forked_shared_mapping_keeps_its_block() -> None:
    system = _touched()
    assert system.apply("fork", {"proc": "init", "child": "c"}) == "ok"
    assert system.apply("exit", {"proc": "c"}) == "ok"
    [block] = system.blocks()
    assert len(block.vmas) == 1 and len(system.folios()) == 1
    system.check_invariants()


def test_mprotect_read_only_of_one_mapper_leaves_the_others_writable() -> None:
    """Two processes map a block (fork of a shared mapping); one makes its mapping read-only:
    its PTEs are read-only, the other's stay writable."""
    system = _touched(64)
    system.apply("fork", {"proc": "init", "child": "c"})
    assert system.apply("mprotect", {"proc": "c", "map": "m", "writable": False}) == "ok"
    child = system.procs["c"].maps["m"][0]
    parent = system.procs["init"].maps["m"][0]
    assert child.ptes and not any(p.writable for p in child.ptes.values())
    assert all(p.writable for p in parent.ptes.values())
    system.check_invariants()
