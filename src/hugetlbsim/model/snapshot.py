"""What a `System` shows: the trace ``state`` of the scenario format, plus the model's extras.

The counters read as the kernel shows them (/proc/meminfo, sysfs, the cgroup files, statfs,
st_blocks); the extras are what only the model knows: the overcommit limit, each mount's
subpool, each file's reservation map and page-cache indexes (as runs of indexes).

A file's ``regions`` and ``cached`` lists are rebuilt only when its map or page cache changed
(their version counters); otherwise a step's state shares the previous step's lists, so a
long trace does not copy every unchanged map at every step.  Consumers must not modify them.
The cached runs come from the inode's `CacheRuns`, kept as pages come and go: a rebuild costs
the runs, not the pages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from hugetlbsim.model.hstate import unsigned
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.subpool import HugepageSubpool

if TYPE_CHECKING:
    from hugetlbsim.model.inode import Inode
    from hugetlbsim.model.system import System

__all__ = ["cached_runs", "snapshot"]

_FileLists = tuple[int, int, list[list[Any]], list[list[int]]]
"""(map version, page cache version, regions, cached runs) of one inode."""
_lists: WeakKeyDictionary[Inode, _FileLists] = WeakKeyDictionary()


def snapshot(system: System) -> dict[str, Any]:
    """Every counter of the trace ``state`` after the last operation, plus the extras.

    The extras: ``overcommit``, each mount's ``subpool`` (size, min_size, used, min reserve
    left), each file's ``regions`` ([from, to, cgroup charged]) and ``cached`` indexes as
    runs ([from, to): every index of the run is in the page cache).
    """
    h = system.hstate
    return {
        "total": unsigned(h.nr_huge_pages),
        "free": unsigned(h.free_huge_pages),
        "rsvd": unsigned(h.resv_huge_pages),
        "surp": unsigned(h.surplus_huge_pages),
        "nr_hugepages": h.max_huge_pages,
        "overcommit": h.nr_overcommit_huge_pages,
        "cgroups": {name: _cgroup_state(cg) if system.cgroup_interface == "v1"
                    else _cgroup_v2_state(cg, cg is system.root)
                    for name, cg in system.cgroups.items()},
        "mounts": {name: _mount_state(m.spool) for name, m in system.mounts.items()},
        "files": {name: _file_state(inode) for name, inode in system.files.items()
                  if inode.linked or name.startswith("memfd:")},
    }


def _file_state(inode: Inode) -> dict[str, Any]:
    """Size, blocks, and the region and cached-run lists (reused while unchanged)."""
    known = _lists.get(inode)
    version, cache_version = inode.resv_map.version, inode.cache_version
    if known is None or known[0] != version or known[1] != cache_version:
        regions = ([[r.from_, r.to, _info_name(r.info)] for r in inode.resv_map.regions()]
                   if known is None or known[0] != version else known[2])
        cached = (inode.cached.runs() if known is None or known[1] != cache_version
                  else known[3])
        known = (version, cache_version, regions, cached)
        _lists[inode] = known
    return {"blocks": inode.i_blocks, "size": inode.i_size, "regions": known[2],
            "cached": known[3]}


def cached_runs(indexes: Iterable[int]) -> list[list[int]]:
    """Sorted indexes as runs ``[[from, to], ...]`` (half-open, maximal)."""
    runs: list[list[int]] = []
    for index in sorted(indexes):
        if runs and runs[-1][1] == index:
            runs[-1][1] = index + 1
        else:
            runs.append([index, index + 1])
    return runs


def _cgroup_state(cg: HugetlbCgroup) -> dict[str, int | None]:
    return {"usage": cg.fault.usage, "rsvd": cg.rsvd.usage,
            "max_usage": cg.fault.watermark, "rsvd_max_usage": cg.rsvd.watermark,
            "failcnt": cg.fault.failcnt, "rsvd_failcnt": cg.rsvd.failcnt,
            "limit": cg.fault.limit, "rsvd_limit": cg.rsvd.limit}


def _cgroup_v2_state(cg: HugetlbCgroup, root: bool) -> dict[str, int | None]:
    """``hugetlb.<size>.current``, ``rsvd.current``, ``max``, ``rsvd.max``, the ``max`` lines
    of ``events`` and ``events.local`` (none for the root: its processes are in a hidden leaf),
    and with memory accounting the memory cgroup's hugetlb charge."""
    state: dict[str, int | None] = {
        "usage": cg.fault.usage, "rsvd": cg.rsvd.usage,
        "limit": cg.fault.limit, "rsvd_limit": cg.rsvd.limit, "events": cg.events}
    if not root:
        state["events_local"] = cg.events_local
    if cg.memory is not None:
        state["memory"] = cg.memory.usage
    return state


def _mount_state(spool: HugepageSubpool | None) -> dict[str, Any]:
    if spool is None:
        return {"free": None, "subpool": None}
    return {"free": spool.statfs_free(), "subpool": {
        "size": None if spool.max_hpages == -1 else spool.max_hpages,
        "min_size": None if spool.min_hpages == -1 else spool.min_hpages,
        "used": spool.used_hpages, "min_reserve": spool.rsv_hpages}}


def _info_name(info: object) -> str | None:
    return info.name if isinstance(info, HugetlbCgroup) else None

