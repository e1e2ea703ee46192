"""Random valid scenarios from a seed, weighted towards the corners of HugeTLB accounting.

`generate(seed)` is reproducible (one `random.Random(seed)`, nothing else) and independent of
the model, so a seed names the same scenario after the model changes.  Scenarios stay small
enough for the kernel backend (pool <= 16 pages, overcommit <= 8, a few mounts, processes,
cgroups and tens of steps) and pass the loader: names are followed by a `World`, and every step
is checked before it is emitted.

The generator keeps a rough shadow of what it did (pages touched per mapping, file sizes, which
process sits in which cgroup) to aim: cgroup limits near their estimated usage, pool shrinks
below the pages in use, punches and truncations over mapped ranges, fork followed by writes
from both sides, rmdir of cgroups that still hold charges.  ``focus`` multiplies the weight of
chosen actions (operation names, or the multi-step corners ``cow`` and ``charged_rmdir``).
``memory_accounting`` adds memory cgroup accounting to a share of the cgroup v2 scenarios.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hugetlbsim.format.scenario import Scenario, Step
from hugetlbsim.fuzz.world import World, full_args

__all__ = ["GenOptions", "generate"]


@dataclass(frozen=True)
class GenOptions:
    """Bounds and weighting of generated scenarios."""

    min_steps: int = 8
    max_steps: int = 40
    max_pool: int = 16
    max_overcommit: int = 8
    focus: tuple[str, ...] = ()
    """Action names (see `WEIGHTS`) whose weight is multiplied by `focus_factor`."""
    focus_factor: float = 8.0
    cgroups: str = "mixed"
    """The hugetlb cgroup interface: ``v1``, ``v2``, or ``mixed`` (each seed draws one, half of
    them v2, from its own stream: the steps of a seed are the same under both)."""
    memory_accounting: float = 0.0
    """Share of the v2 scenarios with ``memory_accounting: true`` (cgroup2 mounted with
    memory_hugetlb_accounting, 6.7 and later), drawn from a stream of its own: a seed's steps
    and interface are the same whatever the share, and 0 gives the scenarios of before."""


@dataclass
class _Map:
    """What the generator remembers of a mapping it created."""

    length: int
    source: str
    """``file``, ``anon`` or ``shm``."""
    shared: bool
    reserving: bool
    mapped: set[int]
    touched: set[int] = field(default_factory=set)
    file: str | None = None

    def copy(self) -> _Map:
        return _Map(self.length, self.source, self.shared, self.reserving, set(self.mapped),
                    set(self.touched), self.file)


class _Generator:
    """One scenario being built."""

    def __init__(self, seed: int, options: GenOptions) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.opt = options
        self.world = World(nonempty=True)
        self.steps: list[Step] = []
        self.counter = 0
        self.maps: dict[tuple[str, str], _Map] = {}
        self.proc_cg: dict[str, str] = {"init": "root"}
        self.file_size: dict[str, int] = {}
        rng = self.rng
        self.pages = 0 if rng.random() < 0.08 else rng.randint(2, options.max_pool)
        self.overcommit = 0 if rng.random() < 0.6 else rng.randint(1, options.max_overcommit)
        self.initial = (self.pages, self.overcommit)

    # -- helpers ----------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, items: Any) -> Any:
        seq = sorted(items)
        return self.rng.choice(seq) if seq else None

    def emit(self, op: str, **given: Any) -> bool:
        """Append the step if the loader would accept it here."""
        args = full_args(op, {k: v for k, v in given.items() if v is not None})
        if not self.world.valid(op, args):
            return False
        self.world.apply(op, args)
        self.steps.append(Step(index=len(self.steps), op=op, args=args))
        return True

    def proc_arg(self) -> str | None:
        """A random live process for a file operation (None: the default, init)."""
        proc: str = self.pick(self.world.procs)
        return None if proc == "init" else proc

    def below(self, cgroup: str, ancestor: str) -> bool:
        return ancestor == "root" or cgroup == ancestor or cgroup.startswith(ancestor + "/")

    def estimate(self, cgroup: str, which: str) -> int:
        """Rough fault ("limit") or reservation ("rsvd_limit") usage of a cgroup's subtree."""
        total = 0
        for (proc, _), m in self.maps.items():
            if not self.below(self.proc_cg.get(proc, "root"), cgroup):
                continue
            if which == "limit":
                total += len(m.touched & m.mapped)
            elif m.reserving and m.source != "shm":
                total += len(m.mapped)
        return total

    def mapped_files(self) -> set[str]:
        return {m.file for m in self.maps.values() if m.file is not None and m.mapped}

    def some_file(self, *, prefer_mapped: bool = True, need: str = "") -> str | None:
        """A live file name, preferring ones that are mapped; None if there is none."""
        files = {f for f, life in self.world.files.items()
                 if need != "open" or life.open}
        if need == "linked":
            files = {f for f in files if self.world.files[f].linked}
        mapped = files & self.mapped_files()
        if prefer_mapped and mapped and self.chance(0.7):
            files = mapped
        name: str | None = self.pick(files)
        return name

    def some_map(self) -> tuple[str, str] | None:
        key: tuple[str, str] | None = self.pick(self.world.maps)
        return key

    # -- actions ----------------------------------------------------------------------------

    def a_pool(self) -> None:
        rng, o = self.rng, self.opt
        kind = rng.choice(("shrink", "shrink", "grow", "overcommit", "both"))
        pages = overcommit = None
        if kind in ("shrink", "both"):
            pages = rng.randint(0, max(0, self.pages - 1))
        elif kind == "grow":
            pages = rng.randint(min(self.pages + 1, o.max_pool), o.max_pool)
        if kind in ("overcommit", "both"):
            overcommit = rng.randint(0, o.max_overcommit)
        if self.emit("pool", pages=pages, overcommit=overcommit):
            self.pages = self.pages if pages is None else pages
            self.overcommit = self.overcommit if overcommit is None else overcommit

    def a_mount(self) -> None:
        if len(self.world.mounts) >= 3:
            return
        rng = self.rng
        size = min_size = None
        kind = rng.random()
        if kind < 0.35:
            size = rng.randint(0, self.pages + 2) if self.chance(0.1) else rng.randint(
                1, max(1, self.pages + 2))
        elif kind < 0.45:
            min_size = rng.randint(0, self.pages + 1)
        elif kind < 0.55:
            size = rng.randint(1, max(1, self.pages + 2))
            min_size = rng.randint(0, size + (2 if self.chance(0.15) else 0))
        self.emit("mount", name=self.fresh("h"), size=size, min_size=min_size)

    def a_umount(self) -> None:
        mount = self.pick(self.world.mounts)
        if mount is not None:
            self.emit("umount", name=mount)

    def a_cgroup(self) -> None:
        rng = self.rng
        existing = self.world.cgroups - {"root"}
        if existing and (len(existing) >= 4 or self.chance(0.45)):
            name = self.pick(existing)
            given: dict[str, Any] = {}
            for which in rng.choice((("limit",), ("rsvd_limit",), ("limit", "rsvd_limit"))):
                near = self.estimate(name, which) + rng.randint(-1, 1)
                given[which] = "max" if self.chance(0.1) else max(0, near)
            self.emit("cgroup", name=name, **given)
            return
        parent = self.pick(existing) if existing and self.chance(0.4) else None
        base = self.fresh("g")
        name = base if parent is None else f"{parent}/{base}"
        given = {}
        if self.chance(0.5):
            for which in ("limit", "rsvd_limit"):
                if self.chance(0.6):
                    given[which] = rng.randint(0, 6)
        self.emit("cgroup", name=name, **given)

    def leaves(self) -> set[str]:
        cgroups = self.world.cgroups - {"root"}
        return {c for c in cgroups if not any(d.startswith(c + "/") for d in cgroups)}

    def a_rmdir(self) -> None:
        cgroup = self.pick(self.leaves())
        if cgroup is None:
            return
        if self.chance(0.6):
            self.evacuate(cgroup)
        self.emit("rmdir", cgroup=cgroup)

    def evacuate(self, cgroup: str) -> None:
        """Move every live process of the cgroup to its parent."""
        parent = cgroup.rpartition("/")[0] or "root"
        for proc in sorted(self.world.procs):
            if self.proc_cg.get(proc) == cgroup and self.emit("attach", proc=proc, cgroup=parent):
                self.proc_cg[proc] = parent

    def a_charged_rmdir(self) -> None:
        """A cgroup whose task reserves and faults pages, then leaves (or exits); rmdir."""
        cgroup = self.fresh("g")
        proc = self.fresh("p")
        if not (self.emit("cgroup", name=cgroup) and self.emit("spawn", proc=proc, cgroup=cgroup)):
            return
        self.proc_cg[proc] = cgroup
        for _ in range(self.rng.randint(1, 2)):
            self.a_mmap(proc)
        for key in [k for k in self.maps if k[0] == proc]:
            if self.chance(0.7):
                self.a_touch(key)
        if self.chance(0.3):
            self.a_exit(proc)
        else:
            self.evacuate(cgroup)
        self.emit("rmdir", cgroup=cgroup)

    def a_spawn(self) -> None:
        proc = self.fresh("p")
        cgroup = self.pick(self.world.cgroups) if self.chance(0.6) else "root"
        if self.emit("spawn", proc=proc, cgroup=None if cgroup == "root" else cgroup):
            self.proc_cg[proc] = cgroup

    def a_attach(self) -> None:
        proc, cgroup = self.pick(self.world.procs), self.pick(self.world.cgroups)
        if self.emit("attach", proc=proc, cgroup=cgroup):
            self.proc_cg[proc] = cgroup

    def a_fork(self, proc: str | None = None) -> str | None:
        if proc is None:
            owners = {p for (p, _), m in self.maps.items() if not m.shared and m.touched}
            proc = self.pick(owners if owners and self.chance(0.7) else self.world.procs)
        child = self.fresh("p")
        if proc is None or not self.emit("fork", proc=proc, child=child):
            return None
        self.proc_cg[child] = self.proc_cg.get(proc, "root")
        for (p, name), m in list(self.maps.items()):
            if p == proc:
                self.maps[(child, name)] = m.copy()
        return child

    def a_cow(self) -> None:
        """fork, then writes to private pages from the parent and the child in random order."""
        private = [k for k, m in sorted(self.maps.items()) if not m.shared and m.mapped]
        if not private:
            self.a_mmap(shared=False)
            private = [k for k, m in sorted(self.maps.items()) if not m.shared and m.mapped]
            if not private:
                return
            self.a_touch(private[0])
        proc, name = self.rng.choice(private)
        child = self.a_fork(proc)
        if child is None:
            return
        for _ in range(self.rng.randint(1, 3)):
            who = self.rng.choice((proc, child))
            if (who, name) in self.maps:
                self.a_touch((who, name), write=True)

    def a_exit(self, proc: str | None = None) -> None:
        proc = proc or self.pick(self.world.procs - {"init"})
        if proc is not None and self.emit("exit", proc=proc):
            for key in [k for k in self.maps if k[0] == proc]:
                del self.maps[key]

    def a_create(self) -> str | None:
        mount = self.pick(self.world.mounts)
        if mount is None:
            self.a_mount()
            mount = self.pick(self.world.mounts)
            if mount is None:
                return None
        file = f"{mount}/{self.fresh('f')}"
        size = self.rng.randint(1, 8) if self.chance(0.6) else None
        if not self.emit("create", file=file, size=size, proc=self.proc_arg()):
            return None
        self.file_size[file] = size or 0
        return file

    def a_memfd(self) -> str | None:
        file = f"memfd:{self.fresh('f')}"
        size = self.rng.randint(1, 8) if self.chance(0.6) else None
        if not self.emit("memfd", file=file, size=size, proc=self.proc_arg()):
            return None
        self.file_size[file] = size or 0
        return file

    def a_truncate(self) -> None:
        file = self.some_file()
        if file is None:
            return
        old = self.file_size.get(file, 0)
        size = self.rng.randint(0, old + 2) if self.chance(0.5) else self.rng.randint(
            0, max(0, old - 1))
        if self.emit("truncate", file=file, size=size, proc=self.proc_arg()):
            self.file_size[file] = size

    def a_fallocate(self) -> None:
        file = self.some_file(prefer_mapped=False)
        if file is None:
            return
        rng = self.rng
        offset = rng.randint(0, self.file_size.get(file, 0) + 1)
        length = 0 if self.chance(0.04) else rng.randint(1, 4)
        keep = self.chance(0.5)
        if self.emit("fallocate", file=file, offset=offset, length=length, keep_size=keep,
                     proc=self.proc_arg()) and not keep:
            self.file_size[file] = max(self.file_size.get(file, 0), offset + length)

    def a_punch(self) -> None:
        file = self.some_file()
        if file is None:
            return
        size = self.file_size.get(file, 0)
        offset = self.rng.randint(0, max(0, size - 1))
        length = 0 if self.chance(0.03) else self.rng.randint(1, 4)
        self.emit("punch", file=file, offset=offset, length=length, proc=self.proc_arg())

    def a_close(self) -> None:
        file = self.some_file(prefer_mapped=False, need="open")
        if file is not None:
            self.emit("close", file=file)

    def a_unlink(self) -> None:
        file = self.some_file(need="linked")
        if file is not None:
            self.emit("unlink", file=file)

    def a_shmget(self) -> str | None:
        shm = self.fresh("s")
        size = 0 if self.chance(0.03) else self.rng.randint(1, 6)
        if self.emit("shmget", shm=shm, size=size, noreserve=self.chance(0.2) or None,
                     proc=self.proc_arg()):
            return shm
        return None

    def a_shmrm(self) -> None:
        shm = self.pick(self.world.shms)
        if shm is not None:
            self.emit("shmrm", shm=shm)

    def length(self) -> int:
        if self.chance(0.1):
            return self.rng.randint(max(1, self.pages - 1), self.pages + 3)
        return self.rng.randint(1, 6)

    def a_mmap(self, proc: str | None = None, shared: bool | None = None) -> None:
        rng = self.rng
        proc = proc or self.pick(self.world.procs)
        name = self.fresh("m")
        source = rng.choices(("file", "memfd", "anon", "shm"), (40, 15, 30, 15))[0]
        if shared is False and source == "shm":
            source = "anon"
        noreserve = self.chance(0.12) or None
        writable = None if self.chance(0.87) else False
        populate = self.chance(0.12) or None
        if source == "shm":
            shm = self.pick(self.world.shms) if self.chance(0.7) else None
            shm = shm or self.a_shmget()
            if shm is None or not self.emit("mmap", proc=proc, map=name, shm=shm,
                                            writable=writable):
                return
            self.maps[(proc, name)] = _Map(self.world.shms[shm], "shm", True, False,
                                           set(range(self.world.shms[shm])))
            return
        length = self.length()
        if source == "anon":
            share = self.chance(0.25) if shared is None else shared
            if self.emit("mmap", proc=proc, map=name, anon=True, length=length,
                         shared=share, noreserve=noreserve, writable=writable,
                         populate=populate):
                self.mapped(proc, name, _Map(length, "anon", share, not noreserve,
                                             set(range(length))), populate)
            return
        files = {f for f in self.world.files if f.startswith("memfd:") == (source == "memfd")}
        file = self.pick(files) if files and self.chance(0.75) else None
        file = file or (self.a_memfd() if source == "memfd" else self.a_create())
        if file is None:
            return
        share = self.chance(0.7) if shared is None else shared
        offset = 0 if self.chance(0.65) else rng.randint(1, 3)
        if self.emit("mmap", proc=proc, map=name, file=file, offset=offset, length=length,
                     shared=share, noreserve=noreserve, writable=writable, populate=populate):
            if writable is None:
                self.file_size[file] = max(self.file_size.get(file, 0), offset + length)
            self.mapped(proc, name, _Map(length, "file", share, not noreserve,
                                         set(range(length)), file=file), populate)

    def mapped(self, proc: str, name: str, m: _Map, populate: bool | None) -> None:
        if populate:
            m.touched = set(m.mapped)
        self.maps[(proc, name)] = m

    def a_touch(self, key: tuple[str, str] | None = None, write: bool | None = None) -> None:
        key = key or self.some_map()
        if key is None:
            return
        rng, m = self.rng, self.maps.get(key)
        length = self.world.maps[key]
        page = rng.randint(0, max(0, length - 1))
        if m is not None and m.touched and write:
            page = rng.choice(sorted(m.touched))
        count = length - page if self.chance(0.45) else rng.randint(1, max(1, length - page))
        if write is None:
            write = self.chance(0.8)
        if self.emit("touch", proc=key[0], map=key[1], page=page, count=count,
                     write=None if write else False) and m is not None:
            m.touched |= set(range(page, page + count)) & m.mapped

    def span(self, length: int) -> tuple[int, int | None]:
        offset = self.rng.randint(0, max(0, length - 1))
        count = None if self.chance(0.3) else self.rng.randint(1, max(1, length - offset))
        return offset, count

    def a_munmap(self) -> None:
        key = self.some_map()
        if key is None:
            return
        length = self.world.maps[key]
        offset, count = (0, None) if self.chance(0.35) else self.span(length)
        if self.emit("munmap", proc=key[0], map=key[1], offset=offset, length=count):
            m = self.maps.get(key)
            if key not in self.world.maps:
                self.maps.pop(key, None)
            elif m is not None:
                m.mapped -= set(range(offset, length if count is None else offset + count))

    def a_mprotect(self) -> None:
        key = self.some_map()
        if key is not None:
            offset, count = self.span(self.world.maps[key])
            self.emit("mprotect", proc=key[0], map=key[1], offset=offset, length=count,
                      writable=self.chance(0.5))

    def a_madvise(self) -> None:
        key = self.some_map()
        if key is None:
            return
        length = self.world.maps[key]
        page = self.rng.randint(0, max(0, length - 1))
        count = self.rng.randint(1, max(1, length - page))
        advice = "dontneed" if self.chance(0.6) else "remove"
        if self.emit("madvise", proc=key[0], map=key[1], page=page, count=count,
                     advice=advice) and key in self.maps:
            self.maps[key].touched -= set(range(page, page + count))

    # -- the scenario -----------------------------------------------------------------------

    def scenario(self) -> Scenario:
        target = self.rng.randint(self.opt.min_steps, self.opt.max_steps)
        names = sorted(WEIGHTS)
        weights = [WEIGHTS[a] * (self.opt.focus_factor if a in self.opt.focus else 1.0)
                   for a in names]
        for _ in range(target * 20):
            if len(self.steps) >= target:
                break
            ACTIONS[self.rng.choices(names, weights)[0]](self)
        interface = self.opt.cgroups
        if interface == "mixed":
            interface = "v2" if random.Random(f"cgroups-{self.seed}").random() < 0.5 else "v1"
        share = self.opt.memory_accounting
        memory = interface == "v2" and share > 0 and (
            random.Random(f"memcg-{self.seed}").random() < share)
        return Scenario(steps=tuple(self.steps[:self.opt.max_steps]),
                        name=f"fuzz-{self.seed}", pool_pages=self.initial[0],
                        pool_overcommit=self.initial[1], cgroups=interface,
                        memory_accounting=memory)


WEIGHTS: dict[str, float] = {
    "mmap": 14, "touch": 16, "munmap": 5, "mprotect": 3, "madvise": 3, "fork": 3, "cow": 3,
    "exit": 3, "spawn": 3, "attach": 2, "cgroup": 4, "rmdir": 2, "charged_rmdir": 1.5,
    "pool": 3, "mount": 2, "umount": 1, "create": 4, "memfd": 2, "truncate": 3,
    "fallocate": 3, "punch": 3, "close": 2, "unlink": 2, "shmget": 2, "shmrm": 1,
}
"""Base weight of each action: every operation, plus the multi-step corners."""

ACTIONS: dict[str, Callable[[_Generator], Any]] = {
    name: getattr(_Generator, f"a_{name}") for name in WEIGHTS}


def generate(seed: int, options: GenOptions | None = None) -> Scenario:
    """The scenario of ``seed``: the same seed and options always give the same steps."""
    return _Generator(seed, options or GenOptions()).scenario()
