"""What a `System` shows: the trace ``state`` of the scenario format, plus the model's extras.

The counters read as the kernel shows them (/proc/meminfo, sysfs, the cgroup files, statfs,
st_blocks); the extras are what only the model knows: the overcommit limit, each mount's
subpool, each file's reservation map and page-cache indexes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hugetlbsim.model.hstate import unsigned
from hugetlbsim.model.hugetlb_cgroup import HugetlbCgroup
from hugetlbsim.model.subpool import HugepageSubpool

if TYPE_CHECKING:
    from hugetlbsim.model.system import System

__all__ = ["snapshot"]


def snapshot(system: System) -> dict[str, Any]:
    """Every counter of the trace ``state`` after the last operation, plus the extras.

    The extras: ``overcommit``, each mount's ``subpool`` (size, min_size, used, min reserve
    left), each file's ``regions`` ([from, to, cgroup charged]) and ``cached`` indexes.
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
        "files": {name: {"blocks": inode.i_blocks, "size": inode.i_size,
                         "regions": [[r.from_, r.to, _info_name(r.info)]
                                     for r in inode.resv_map.regions()],
                         "cached": sorted(inode.page_cache)}
                  for name, inode in system.files.items()
                  if inode.linked or name.startswith("memfd:")},
    }


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

