"""What a `System` shows: the trace ``state`` of the scenario format, plus the model's extras.

The counters read as the kernel shows them (/proc/meminfo, sysfs, the cgroup files, statfs,
st_blocks); the extras are what only the model knows: the overcommit limit, each mount's
subpool, each file's reservation map and page-cache indexes (as runs of indexes).

A state shares with the previous snapshot of the same system what did not change: a file's
``regions`` and ``cached`` lists until its map or page cache changes (their version counters),
and, in a section (``cgroups``, ``mounts``, ``files``) of `SHARED` members or more, each
member's dict until one of its counters changes and the section itself until one of its
members does.  So a long trace does not copy what did not change, an unchanged cgroup costs a
tuple of its counters compared with the last one, and the JSON writer (`trace.JsonStream`)
reuses, by identity, the text it wrote the step before.  Consumers must not modify a state's
parts.  The cached runs come from the inode's `CacheRuns`, kept as pages come and go: a
rebuild costs the runs, not the pages.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from itertools import compress
from operator import ne
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

SHARED = 8
"""Members a section needs before its parts are kept between snapshots (below it, building
them afresh costs less than comparing)."""


class _Section:
    """One section (cgroups, mounts or files) as a snapshot showed it: its members' names,
    objects (held, so their ids stay theirs), keys (what each member's state is made of) and
    states, and the section's state."""

    __slots__ = ("ids", "keys", "names", "objects", "state", "states")

    def __init__(self, names: list[str], objects: list[Any], keys: list[Hashable],
                 states: list[dict[str, Any]]) -> None:
        self.names = names
        self.objects = objects
        self.ids = list(map(id, objects))
        self.keys = keys
        self.states = states
        self.state = dict(zip(names, states, strict=True))


_shown: WeakKeyDictionary[System, dict[str, _Section]] = WeakKeyDictionary()
"""Each system's sections as its last snapshot showed them."""


def snapshot(system: System) -> dict[str, Any]:
    """Every counter of the trace ``state`` after the last operation, plus the extras.

    The extras: ``overcommit``, each mount's ``subpool`` (size, min_size, used, min reserve
    left), each file's ``regions`` ([from, to, cgroup charged]) and ``cached`` indexes as
    runs ([from, to): every index of the run is in the page cache).
    """
    h = system.hstate
    cgroups = system.cgroups
    root = system.root
    if len(cgroups) < SHARED:
        cgroup_states = {name: _cgroup_state(cg) if system.cgroup_interface == "v1"
                         else _cgroup_v2_state(cg, cg is root) for name, cg in cgroups.items()}
    elif system.cgroup_interface == "v1":
        cgs = list(cgroups.values())
        cgroup_states = _shared(system, "cgroups", list(cgroups), cgs, [
            (cg.fault.usage, cg.rsvd.usage, cg.fault.watermark, cg.rsvd.watermark,
             cg.fault.failcnt, cg.rsvd.failcnt, cg.fault.limit, cg.rsvd.limit) for cg in cgs],
            _cgroup_state)
    else:
        cgs = list(cgroups.values())
        cgroup_states = _shared(system, "cgroups", list(cgroups), cgs, [
            (cg.fault.usage, cg.rsvd.usage, cg.fault.limit, cg.rsvd.limit, cg.events,
             cg.events_local, None if cg.memory is None else cg.memory.usage) for cg in cgs],
            lambda cg: _cgroup_v2_state(cg, cg is root))
    if len(system.mounts) < SHARED:
        mount_states = {name: _mount_state(m.spool) for name, m in system.mounts.items()}
    else:
        mounts = list(system.mounts.values())
        mount_states = _shared(system, "mounts", list(system.mounts), mounts, [
            None if m.spool is None else (m.spool.statfs_free(), m.spool.max_hpages,
                                          m.spool.min_hpages, m.spool.used_hpages,
                                          m.spool.rsv_hpages) for m in mounts],
            lambda m: _mount_state(m.spool))
    if len(system.files) < SHARED:
        file_states = {name: _file_state(inode) for name, inode in system.files.items()
                       if inode.linked or name.startswith("memfd:")}
    else:
        files = {name: inode for name, inode in system.files.items()
                 if inode.linked or name.startswith("memfd:")}
        inodes = list(files.values())
        file_states = _shared(system, "files", list(files), inodes, [
            (inode.i_blocks, inode.i_size, inode.resv_map.version, inode.cache_version)
            for inode in inodes], _file_state)
    return {
        "total": unsigned(h.nr_huge_pages),
        "free": unsigned(h.free_huge_pages),
        "rsvd": unsigned(h.resv_huge_pages),
        "surp": unsigned(h.surplus_huge_pages),
        "nr_hugepages": h.max_huge_pages,
        "overcommit": h.nr_overcommit_huge_pages,
        "cgroups": cgroup_states,
        "mounts": mount_states,
        "files": file_states,
    }


def _shared(system: System, section: str, names: list[str], objects: list[Any],
            keys: list[Hashable], build: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A section's state, ``{name: build(object)}``, keeping the last snapshot's state of each
    member whose object and key (the counters its state is made of) are the same, and the
    last section itself while every member is."""
    shown = _shown.get(system)
    if shown is None:
        shown = _shown[system] = {}
    last = shown.get(section)
    if last is not None and last.names == names and last.ids == list(map(id, objects)):
        if last.keys == keys:
            return last.state
        states = last.states.copy()
        for i in compress(range(len(keys)), map(ne, keys, last.keys)):
            states[i] = build(objects[i])
    else:  # members came or went: the ones still there keep their states
        before = {} if last is None else dict(zip(last.ids, zip(last.keys, last.states,
                                                                 strict=True), strict=True))
        states = []
        for obj, key in zip(objects, keys, strict=True):
            known = before.get(id(obj))
            states.append(known[1] if known is not None and known[0] == key else build(obj))
    made = shown[section] = _Section(names, objects, keys, states)
    return made.state


def _file_state(inode: Inode) -> dict[str, Any]:
    """Size, blocks, and the region and cached-run lists (reused while unchanged)."""
    known = _lists.get(inode)
    version, cache_version = inode.resv_map.version, inode.cache_version
    if known is None or known[0] != version or known[1] != cache_version:
        regions = (inode.resv_map.region_lists(_info_name)
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

