"""The loader's name rules as a fast step-by-step tracker, without YAML.

`World` follows which names are live after each step exactly as `hugetlbsim.format.loader` does
(scenario-format.md, "Names are checked before anything runs"), so the generator can only emit
steps the loader accepts and the shrinker can drop the steps a removal left dangling.  It knows
nothing of run-time results: a name whose introducing step fails at run time is still live here,
as it is for the loader.  The tests check it against the loader by dumping and loading.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from hugetlbsim.format.scenario import OPS, Scenario, Step

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_CGROUP = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
_FILE = re.compile(r"[A-Za-z0-9_-]+/[A-Za-z0-9_-]+|memfd:[A-Za-z0-9_-]+")
_SHM_MMAP_DEFAULTS = {"file": None, "anon": False, "offset": 0, "length": None, "shared": True,
                      "noreserve": False, "populate": False}
"""mmap of a shm segment may give only proc, map, shm and writable: the rest stay defaults."""


@dataclass
class FileLife:
    """A live file name: whether the scenario holds its handle and whether it has a path."""

    open: bool = True
    linked: bool = True


class World:
    """The live names after the steps applied so far (loader semantics).

    With ``nonempty`` a page range must hold at least one page (the loader accepts empty
    ranges; the generator never makes them, and the shrinker must not slide into them).
    """

    def __init__(self, *, nonempty: bool = False) -> None:
        self.nonempty = nonempty
        self.procs: set[str] = {"init"}
        self.maps: dict[tuple[str, str], int] = {}
        """(proc, map) → pages of the mapping as created."""
        self.files: dict[str, FileLife] = {}
        self.mounts: set[str] = set()
        self.shms: dict[str, int] = {}
        """shm → pages of the segment."""
        self.cgroups: set[str] = {"root"}

    # -- checking ---------------------------------------------------------------------------

    def valid(self, op: str, args: Mapping[str, Any]) -> bool:
        """Whether the loader accepts this step here (types, names, page ranges)."""
        spec = OPS.get(op)
        if spec is None or set(args) - {a.name for a in spec}:
            return False
        for arg in spec:
            value = args.get(arg.name, arg.default)
            if value is None:
                if arg.required:
                    return False
                continue
            if not self._typed(arg.kind, value):
                return False
            if arg.kind in ("int", "bool", "limit", "advice") or (op == "cgroup"):
                continue
            live = self._live(arg.kind, value, args)
            if live == arg.introduces:
                return False
        return bool(getattr(self, f"_check_{op}", _true)(args))

    @staticmethod
    def _typed(kind: str, value: Any) -> bool:
        if kind == "int":
            return type(value) is int and value >= 0
        if kind == "bool":
            return type(value) is bool
        if kind == "limit":
            return value == "max" or (type(value) is int and value >= 0)
        if kind == "advice":
            return value in ("dontneed", "remove")
        if not isinstance(value, str):
            return False
        pattern = {"cgroup": _CGROUP, "file": _FILE}.get(kind, _NAME)
        if kind == "memfd":
            return value.startswith("memfd:") and bool(_NAME.fullmatch(value[6:]))
        return bool(pattern.fullmatch(value))

    def _live(self, kind: str, name: str, args: Mapping[str, Any]) -> bool:
        if kind == "proc":
            return name in self.procs
        if kind == "map":
            return (args["proc"], name) in self.maps
        if kind in ("file", "memfd"):
            return name in self.files
        if kind == "shm":
            return name in self.shms
        if kind == "cgroup":
            return name in self.cgroups
        return name in self.mounts

    def _check_cgroup(self, a: Mapping[str, Any]) -> bool:
        name = a["name"]
        if name == "root":
            return a.get("limit") is None and a.get("rsvd_limit") is None
        if name in self.cgroups:
            return True
        parent = name.rpartition("/")[0]
        return parent.split("/")[0] != "root" and (not parent or parent in self.cgroups)

    def _check_rmdir(self, a: Mapping[str, Any]) -> bool:
        return bool(a["cgroup"] != "root")

    def _check_create(self, a: Mapping[str, Any]) -> bool:
        file: str = a["file"]
        return not file.startswith("memfd:") and file.partition("/")[0] in self.mounts

    def _check_close(self, a: Mapping[str, Any]) -> bool:
        return self.files[a["file"]].open

    def _check_unlink(self, a: Mapping[str, Any]) -> bool:
        return not a["file"].startswith("memfd:") and self.files[a["file"]].linked

    def _check_mmap(self, a: Mapping[str, Any]) -> bool:
        sources = [k for k in ("file", "shm", "anon") if a.get(k) not in (None, False)]
        if len(sources) != 1:
            return False
        if sources == ["shm"]:
            return all(a.get(k, v) == v for k, v in _SHM_MMAP_DEFAULTS.items())
        return a.get("length") is not None

    def _check_munmap(self, a: Mapping[str, Any]) -> bool:
        return self._span(a, "offset", "length") is not None

    _check_mprotect = _check_munmap

    def _check_touch(self, a: Mapping[str, Any]) -> bool:
        return self._span(a, "page", "count") is not None

    _check_madvise = _check_touch

    def _span(self, a: Mapping[str, Any], first: str, count: str) -> tuple[int, int] | None:
        """Pages ``[start, end)`` of the step's mapping, or None if outside it as created."""
        length = self.maps[(a["proc"], a["map"])]
        start: int = a.get(first) or 0
        n = a.get(count, 1 if count == "count" else None)
        end = max(start, length) if n is None else start + n
        if end > length or (self.nonempty and end <= start):
            return None
        return start, end

    # -- following --------------------------------------------------------------------------

    def apply(self, op: str, args: Mapping[str, Any]) -> None:
        """Follow a valid step: the names it introduces and ends."""
        a = {arg.name: args.get(arg.name, arg.default) for arg in OPS[op]}
        if op == "mount":
            self.mounts.add(a["name"])
        elif op == "umount":
            prefix = a["name"] + "/"
            for name in [f for f in self.files if f.startswith(prefix)]:
                del self.files[name]
            self.mounts.discard(a["name"])
        elif op == "cgroup":
            self.cgroups.add(a["name"])
        elif op == "rmdir":
            self.cgroups.discard(a["cgroup"])
        elif op == "spawn":
            self.procs.add(a["proc"])
        elif op == "fork":
            self.procs.add(a["child"])
            for (proc, name), length in list(self.maps.items()):
                if proc == a["proc"]:
                    self.maps[(a["child"], name)] = length
        elif op == "exit":
            self.procs.discard(a["proc"])
            for key in [k for k in self.maps if k[0] == a["proc"]]:
                del self.maps[key]
        elif op == "create":
            self.files[a["file"]] = FileLife()
        elif op == "memfd":
            self.files[a["file"]] = FileLife(linked=False)
        elif op in ("close", "unlink"):
            life = self.files[a["file"]]
            if op == "close":
                life.open = False
            else:
                life.linked = False
            if not life.open and not life.linked:
                del self.files[a["file"]]
        elif op == "shmget":
            self.shms[a["shm"]] = a["size"]
        elif op == "shmrm":
            del self.shms[a["shm"]]
        elif op == "mmap":
            length = self.shms[a["shm"]] if a["shm"] is not None else a["length"]
            self.maps[(a["proc"], a["map"])] = length
        elif op == "munmap":
            key = (a["proc"], a["map"])
            if self._span(a, "offset", "length") == (0, self.maps[key]):
                del self.maps[key]


def _true(_: Mapping[str, Any]) -> bool:
    return True


def full_args(op: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The step's arguments with every default filled in, as the loader builds them."""
    return {a.name: given.get(a.name, a.default) for a in OPS[op]}


def valid_steps(steps: Iterable[Step], *, nonempty: bool = False) -> tuple[Step, ...]:
    """The steps that stay valid in order, dropping each one whose names a removal left
    dangling (and whatever depends on it); indexes renumbered."""
    world = World(nonempty=nonempty)
    kept: list[Step] = []
    for step in steps:
        if world.valid(step.op, step.args):
            world.apply(step.op, step.args)
            kept.append(replace(step, index=len(kept), line=0))
    return tuple(kept)


def is_valid(scenario: Scenario) -> bool:
    """Whether every step of the scenario is valid where it stands."""
    return len(valid_steps(scenario.steps)) == len(scenario.steps)
