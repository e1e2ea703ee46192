"""``hugetlbsim status``: the live machine's HugeTLB state on one screen, read-only.

Three parts: every pool under /sys/kernel/mm/hugepages (Total, Free, Rsvd, Surp, overcommit,
and the persistent target /proc/sys/vm/nr_hugepages shows for the default size), every
hugetlbfs mount of /proc/mounts with its subpool options (``size=``, ``min_size=``) and statfs
free pages, and every cgroup v1 hierarchy with the hugetlb controller with the counters of
its cgroups, beside the cgroup2 hierarchy's hugetlb cgroups (``current``, ``rsvd.current``,
``max``, ``rsvd.max`` and the ``max`` lines of ``events`` / ``events.local``).  Nothing is
written.  A file that cannot be read (not root, a private mount point) is reported as
unreadable instead of stopping the rest.  `collect` takes the root of
the tree to read, so tests can give it a fabricated /proc and /sys.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hugetlbsim.backends.kernel import UNLIMITED
from hugetlbsim.format.scenario import UNSIGNED_MAX
from hugetlbsim.trace import show_value

__all__ = [
    "CGROUP2_FILES",
    "CGROUP_FILES",
    "POOL_FILES",
    "Cgroup",
    "Hierarchy",
    "HugetlbfsMount",
    "Pool",
    "Status",
    "collect",
    "render"
]

POOL_FILES: Final = (("total", "nr_hugepages"), ("free", "free_hugepages"),
                     ("rsvd", "resv_hugepages"), ("surp", "surplus_hugepages"),
                     ("overcommit", "nr_overcommit_hugepages"))
"""Pool counter → its file in /sys/kernel/mm/hugepages/hugepages-<size>kB/."""
CGROUP2_FILES: Final = (("usage", "current"), ("limit", "max"), ("rsvd", "rsvd.current"),
                        ("rsvd_limit", "rsvd.max"), ("events", "events"),
                        ("events_local", "events.local"))
"""The cgroup v2 hugetlb files shown (``hugetlb.<size>.<file>``); the root cgroup has none."""
CGROUP_FILES: Final = (("usage", "usage_in_bytes"), ("limit", "limit_in_bytes"),
                       ("rsvd", "rsvd.usage_in_bytes"), ("rsvd_limit", "rsvd.limit_in_bytes"),
                       ("max_usage", "max_usage_in_bytes"),
                       ("rsvd_max_usage", "rsvd.max_usage_in_bytes"),
                       ("failcnt", "failcnt"), ("rsvd_failcnt", "rsvd.failcnt"))
"""Cgroup counter → the suffix of its file ``hugetlb.<size>.<suffix>`` (bytes or counts)."""
_SIZE_DIR = re.compile(r"hugepages-(\d+)kB")
_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class Pool:
    """One page size's pool; a counter is None if its file cannot be read."""

    size_kb: int
    default: bool
    counters: dict[str, int | None]
    target: int | None
    """/proc/sys/vm/nr_hugepages (the persistent target): default page size only."""


@dataclass(frozen=True)
class HugetlbfsMount:
    """A hugetlbfs mount; ``size``/``min_size`` in pages of its page size (None: not set)."""

    point: str
    options: str
    pagesize_kb: int | None
    size: int | None
    min_size: int | None
    free: int | None
    """statfs free pages (only with ``size=``: otherwise statfs reports no limit)."""
    error: str | None = None


@dataclass(frozen=True)
class Cgroup:
    """One hugetlb cgroup: per page size name (``2MB``), counters in pages (a limit None when
    unlimited; a counter whose file cannot be read is left out)."""

    path: str
    counters: dict[str, dict[str, int | None]]


@dataclass(frozen=True)
class Hierarchy:
    """A mounted cgroup v1 hierarchy with the hugetlb controller."""

    point: str
    also: list[str] = field(default_factory=list)
    """Other mount points of the same hierarchy."""
    cgroups: list[Cgroup] = field(default_factory=list)
    error: str | None = None
    interface: str = "v1"
    """``v1``, or ``v2`` for the cgroup2 hierarchy (only cgroups with hugetlb files)."""


@dataclass(frozen=True)
class Status:
    """Everything `collect` read."""

    pools: list[Pool]
    mounts: list[HugetlbfsMount]
    hierarchies: list[Hierarchy]
    uid: int
    unified: list[Hierarchy] = field(default_factory=list)
    """The cgroup2 hierarchy, when hugetlb is enabled somewhere in it."""

    def to_json(self) -> dict[str, Any]:
        """The status as JSON-able data."""
        return asdict(self)


def collect(root: str | Path = "/") -> Status:
    """Read the HugeTLB state of the tree at ``root`` (the live machine by default)."""
    root = Path(root)
    default_kb = _meminfo_default_kb(root)
    pools = []
    for size_kb, directory in _pool_dirs(root):
        counters = {key: _read_int(directory / name) for key, name in POOL_FILES}
        target = (_read_int(root / "proc/sys/vm/nr_hugepages") if size_kb == default_kb
                  else None)
        pools.append(Pool(size_kb, size_kb == default_kb, counters, target))
    mounts_table = _mounts(root)
    mounts = [_hugetlbfs(root, point, options, default_kb)
              for fstype, point, options in mounts_table if fstype == "hugetlbfs"]
    points = [point for fstype, point, options in mounts_table
              if fstype == "cgroup" and "hugetlb" in options.split(",")]
    sizes = [p.size_kb for p in pools]
    unified = [_unified(root, point, sizes) for fstype, point, _ in mounts_table
               if fstype == "cgroup2"]
    return Status(pools, mounts, _hierarchies(root, points, sizes), os.geteuid(),
                  [h for h in unified if h.cgroups or h.error])


def _unified(root: Path, point: str, sizes_kb: list[int]) -> Hierarchy:
    """The cgroup2 hierarchy at ``point``: every cgroup that has hugetlb files (its parent
    distributes the controller), parents first."""
    top = _under(root, point)
    cgroups: list[Cgroup] = []
    try:
        for dirpath, dirnames, _ in os.walk(top, onerror=_raise):
            dirnames.sort()
            directory = Path(dirpath)
            counters: dict[str, dict[str, int | None]] = {}
            for size_kb in sizes_kb:
                name = _size_name(size_kb)
                values: dict[str, int | None] = {}
                for key, suffix in CGROUP2_FILES:
                    raw = _read_v2(directory / f"hugetlb.{name}.{suffix}", key, size_kb << 10)
                    if raw is not False:
                        values[key] = raw
                if values:
                    counters[name] = values
            if counters:
                rel = directory.relative_to(top).as_posix()
                cgroups.append(Cgroup(f"/{rel}", counters))
    except OSError as exc:
        return Hierarchy(point, [], cgroups, exc.strerror or str(exc), "v2")
    return Hierarchy(point, [], cgroups, None, "v2")


def _raise(exc: OSError) -> None:
    raise exc


def _read_v2(path: Path, key: str, page: int) -> int | bool | None:
    """A cgroup v2 hugetlb file in pages (events: the ``max`` line; a limit ``max`` or the
    fresh 2^63 - 4096 is None); False when the file does not exist or cannot be read."""
    try:
        text = path.read_text().split()
    except OSError:
        return False
    try:
        if key.startswith("events"):
            return int(text[text.index("max") + 1])
        if text[0] == "max":
            return None
        raw = int(text[0])
    except (ValueError, IndexError):
        return False
    return None if key.endswith("limit") and raw >= UNLIMITED else raw // page


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _meminfo_default_kb(root: Path) -> int | None:
    try:
        text = (root / "proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^Hugepagesize:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _pool_dirs(root: Path) -> list[tuple[int, Path]]:
    base = root / "sys/kernel/mm/hugepages"
    try:
        names = os.listdir(base)
    except OSError:
        return []
    found = [(int(m.group(1)), base / name) for name in names if (m := _SIZE_DIR.fullmatch(name))]
    return sorted(found)


def _mounts(root: Path) -> list[tuple[str, str, str]]:
    """(fstype, mount point, options) of every line of /proc/mounts."""
    try:
        lines = (root / "proc/mounts").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 4:
            out.append((fields[2], _unescape(fields[1]), fields[3]))
    return out


def _unescape(point: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)


def _kb(text: str | None) -> int | None:
    """``4194304`` or ``2M`` (as /proc/mounts shows hugetlbfs options) in KiB; None if not."""
    match = re.fullmatch(r"(\d+)([kmgt]?)", (text or "").lower())
    return None if match is None else int(match.group(1)) * _UNITS[match.group(2)] >> 10


def _hugetlbfs(root: Path, point: str, options: str, default_kb: int | None) -> HugetlbfsMount:
    opts = dict(o.partition("=")[::2] for o in options.split(","))
    pagesize_kb = _kb(opts["pagesize"]) if "pagesize" in opts else default_kb
    size, min_size = (None if kb is None or not pagesize_kb else kb // pagesize_kb
                      for kb in (_kb(opts.get("size")), _kb(opts.get("min_size"))))
    free = error = None
    if "size" in opts:
        try:
            free = os.statvfs(_under(root, point)).f_bfree
        except OSError as exc:
            error = f"statfs: {exc.strerror or exc}"
    return HugetlbfsMount(point, options, pagesize_kb, size, min_size, free, error)


def _under(root: Path, point: str) -> Path:
    return root / point.lstrip("/")


def _size_name(size_kb: int) -> str:
    """The page size as hugetlb cgroup file names spell it: ``2MB``, ``1GB``, ``64KB``."""
    for unit, shift in (("GB", 20), ("MB", 10)):
        if size_kb >= 1 << shift:
            return f"{size_kb >> shift}{unit}"
    return f"{size_kb}KB"


def _hierarchies(root: Path, points: list[str], sizes_kb: list[int]) -> list[Hierarchy]:
    """One entry per hierarchy (mount points of the same superblock are grouped)."""
    by_dev: dict[object, list[str]] = {}
    for point in points:
        try:
            key: object = os.stat(_under(root, point)).st_dev
        except OSError:
            key = point
        by_dev.setdefault(key, []).append(point)
    out = []
    for group in by_dev.values():
        first = _under(root, group[0])
        cgroups: list[Cgroup] = []
        try:
            _walk(first, first, sizes_kb, cgroups)
        except OSError as exc:
            out.append(Hierarchy(group[0], group[1:], cgroups, exc.strerror or str(exc)))
            continue
        out.append(Hierarchy(group[0], group[1:], cgroups))
    return out


def _walk(top: Path, directory: Path, sizes_kb: list[int], out: list[Cgroup]) -> None:
    """Every cgroup below ``directory``, parents first (a child unreadable raises)."""
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    counters = {}
    for size_kb in sizes_kb:
        name = _size_name(size_kb)
        page = size_kb << 10
        values: dict[str, int | None] = {}
        for key, suffix in CGROUP_FILES:
            raw = _read_int(directory / f"hugetlb.{name}.{suffix}")
            if raw is None:
                continue
            if "failcnt" not in key:
                raw = None if key.endswith("limit") and raw >= UNLIMITED else raw // page
            values[key] = raw
        counters[name] = values
    rel = directory.relative_to(top).as_posix()
    out.append(Cgroup("/" if rel == "." else f"/{rel}", counters))
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _walk(top, Path(entry.path), sizes_kb, out)


def _size_label(size_kb: int) -> str:
    return _size_name(size_kb).removesuffix("B")


def _value(value: int | None, none: str = "?") -> str:
    return none if value is None else show_value(value)


def render(status: Status) -> RenderableType:
    """The status as rich tables: pools, mounts, cgroups (only those with something to show)."""
    parts: list[RenderableType] = []
    pools = Table(title="huge page pools (/sys/kernel/mm/hugepages)", title_justify="left")
    for name in ("size", "Total", "Free", "Rsvd", "Surp", "available", "persistent",
                 "target", "overcommit", "max"):
        pools.add_column(name, justify="left" if name == "size" else "right")
    for pool in status.pools:
        c = pool.counters
        total, free, rsvd, surp, over = (c[k] for k, _ in POOL_FILES)
        persistent = None if total is None or surp is None else total - surp
        cells = [_size_label(pool.size_kb) + (" (default)" if pool.default else ""),
                 *map(_value, (total, free, rsvd, surp)),
                 _value(None if free is None or rsvd is None else (free - rsvd) & UNSIGNED_MAX),
                 _value(persistent), _value(pool.target, "-"), _value(over),
                 _value(None if persistent is None or over is None else persistent + over)]
        pools.add_row(*cells)
    parts.append(pools)
    parts.append(Text("available = Free - Rsvd (pages a fault without a reservation may take); "
                      "persistent = Total - Surp; target = /proc/sys/vm/nr_hugepages (default "
                      "size only); max = persistent + overcommit", style="dim"))
    mounts = Table(title="hugetlbfs mounts (/proc/mounts)", title_justify="left")
    for name in ("mount point", "page size", "size", "min_size", "statfs free", "options"):
        mounts.add_column(name, justify="right" if name in ("size", "min_size", "statfs free")
                          else "left")
    for m in status.mounts:
        mounts.add_row(m.point, "?" if m.pagesize_kb is None else _size_label(m.pagesize_kb),
                       _value(m.size, "-"), _value(m.min_size, "-"),
                       Text(m.error, style="red") if m.error else _value(m.free, "-"),
                       m.options)
    parts.append(mounts if status.mounts else Text("no hugetlbfs mounts", style="dim"))
    for h in status.hierarchies:
        parts.append(_cgroup_table(h))
    if not status.hierarchies:
        parts.append(Text("no cgroup v1 hierarchy with the hugetlb controller is mounted",
                          style="dim"))
    for h in status.unified:
        parts.append(_cgroup_table(h))
    if status.uid != 0:
        parts.append(Text(f"read as uid {status.uid}: '?' marks what only root can read",
                          style="dim"))
    return Group(*parts)


def _cgroup_table(h: Hierarchy) -> RenderableType:
    also = f" (also at {', '.join(h.also)})" if h.also else ""
    kind = " (cgroup v2)" if h.interface == "v2" else ""
    title = f"hugetlb cgroups{kind} at {h.point}{also}"
    table = Table(title=title, title_justify="left")
    keys = [k for k, _ in (CGROUP2_FILES if h.interface == "v2" else CGROUP_FILES)]
    for name in ("cgroup", "size", *keys):
        table.add_column(name, justify="left" if name in ("cgroup", "size") else "right")
    for cg in h.cgroups:
        for size, values in cg.counters.items():
            if cg.path != "/" and all(v == (None if k.endswith("limit") else 0)
                                      for k, v in values.items()):
                continue
            table.add_row(cg.path, size.removesuffix("B"),
                          *("?" if k not in values else _value(values[k], "max") for k in keys))
    notes = [f"{len(h.cgroups)} cgroups; rows all zero and unlimited are left out"]
    if h.error:
        notes.append(f"cannot read the hierarchy: {h.error}")
    note = Text("; ".join(notes), style="red" if h.error else "dim")
    return Group(table, note) if table.row_count else Group(Text(title), note)
