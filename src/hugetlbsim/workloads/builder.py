"""Build a scenario in code: a fluent `ScenarioBuilder` over `format.scenario`'s dataclasses.

Every method adds one step with the format's argument names (scenario-format.md) and returns
the builder; `ScenarioBuilder.build` returns the `Scenario`, checked by the loader itself (the
scenario is written as YAML and read back, so a builder can never make a scenario that a file
could not hold)::

    s = (ScenarioBuilder("demo", pool=8)
         .mount("hp").create("hp/f", size=4).spawn("p")
         .mmap("p", "m", file="hp/f", length=4).touch("p", "m", 0, count=2)
         .build())
"""

from __future__ import annotations

from typing import Any, Self

from hugetlbsim.format.loader import dump_scenario, load_text
from hugetlbsim.format.scenario import OPS, Scenario, Step

__all__ = ["ScenarioBuilder"]


class ScenarioBuilder:
    """Steps added one call at a time; `build` checks them as the loader checks a file."""

    def __init__(self, name: str = "", *, pool: int = 0, overcommit: int = 0,
                 pagesize: str = "2M", kernel: str | None = None, cgroups: str = "v1") -> None:
        self.name = name
        self.pool = pool
        self.overcommit = overcommit
        self.pagesize = pagesize
        self.kernel = kernel
        self.cgroups = cgroups
        self.steps: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []

    def step(self, op: str, expect: dict[str, Any] | None = None, **args: Any) -> Self:
        """Any operation by name: ``step("mmap", proc="p", map="m", anon=True, length=2)``."""
        if op not in OPS:
            raise ValueError(f"unknown operation {op!r}; one of {', '.join(OPS)}")
        known = {a.name for a in OPS[op]}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"{op} takes no argument {unknown[0]!r}; it takes "
                             f"{', '.join(sorted(known))}")
        self.steps.append((op, {k: v for k, v in args.items() if v is not None}, expect))
        return self

    # One method per operation, with the format's argument names.
    def set_pool(self, pages: int | None = None, overcommit: int | None = None) -> Self:
        """Write the pool size (the ``pool`` operation)."""
        return self.step("pool", pages=pages, overcommit=overcommit)

    def mount(self, name: str, size: int | None = None, min_size: int | None = None) -> Self:
        """Mount hugetlbfs."""
        return self.step("mount", name=name, size=size, min_size=min_size)

    def umount(self, name: str) -> Self:
        """Unmount."""
        return self.step("umount", name=name)

    def cgroup(self, name: str, limit: int | str | None = None,
               rsvd_limit: int | str | None = None) -> Self:
        """Create a cgroup (if missing) and set its limits."""
        return self.step("cgroup", name=name, limit=limit, rsvd_limit=rsvd_limit)

    def rmdir(self, cgroup: str) -> Self:
        """Remove a cgroup."""
        return self.step("rmdir", cgroup=cgroup)

    def spawn(self, proc: str, cgroup: str | None = None) -> Self:
        """Start a process (in ``root`` unless told)."""
        return self.step("spawn", proc=proc, cgroup=cgroup)

    def attach(self, proc: str, cgroup: str) -> Self:
        """Move a process to a cgroup."""
        return self.step("attach", proc=proc, cgroup=cgroup)

    def fork(self, proc: str, child: str) -> Self:
        """Fork; the child inherits every mapping and the cgroup."""
        return self.step("fork", proc=proc, child=child)

    def exit(self, proc: str) -> Self:
        """The process exits."""
        return self.step("exit", proc=proc)

    def create(self, file: str, size: int | None = None, proc: str | None = None) -> Self:
        """Open a hugetlbfs file with O_CREAT, then ftruncate it if ``size`` is given."""
        return self.step("create", file=file, size=size, proc=proc)

    def memfd(self, file: str, size: int | None = None, proc: str | None = None) -> Self:
        """memfd_create(MFD_HUGETLB) (``file`` is ``memfd:NAME``)."""
        return self.step("memfd", file=file, size=size, proc=proc)

    def truncate(self, file: str, size: int, proc: str | None = None) -> Self:
        """ftruncate."""
        return self.step("truncate", file=file, size=size, proc=proc)

    def fallocate(self, file: str, offset: int, length: int, keep_size: bool = False,
                  proc: str | None = None) -> Self:
        """fallocate (mode 0, or KEEP_SIZE)."""
        return self.step("fallocate", file=file, offset=offset, length=length,
                         keep_size=keep_size or None, proc=proc)

    def punch(self, file: str, offset: int, length: int, proc: str | None = None) -> Self:
        """fallocate(PUNCH_HOLE | KEEP_SIZE)."""
        return self.step("punch", file=file, offset=offset, length=length, proc=proc)

    def close(self, file: str) -> Self:
        """Close the scenario's handle."""
        return self.step("close", file=file)

    def unlink(self, file: str) -> Self:
        """Unlink the name."""
        return self.step("unlink", file=file)

    def shmget(self, shm: str, size: int, noreserve: bool = False,
               proc: str | None = None) -> Self:
        """shmget(SHM_HUGETLB)."""
        return self.step("shmget", shm=shm, size=size, noreserve=noreserve or None, proc=proc)

    def shmrm(self, shm: str) -> Self:
        """shmctl(IPC_RMID)."""
        return self.step("shmrm", shm=shm)

    def mmap(self, proc: str, map: str, *, file: str | None = None, shm: str | None = None,
             anon: bool = False, offset: int = 0, length: int | None = None,
             shared: bool = True, noreserve: bool = False, writable: bool = True,
             populate: bool = False) -> Self:
        """mmap of a file, a shm segment (``shm``) or anonymous MAP_HUGETLB memory."""
        if shm is not None:
            return self.step("mmap", proc=proc, map=map, shm=shm,
                             writable=None if writable else False)
        return self.step("mmap", proc=proc, map=map, file=file, anon=anon or None,
                         offset=offset or None, length=length,
                         shared=None if shared else False, noreserve=noreserve or None,
                         writable=None if writable else False, populate=populate or None)

    def munmap(self, proc: str, map: str, offset: int = 0, length: int | None = None) -> Self:
        """munmap part or all of a mapping."""
        return self.step("munmap", proc=proc, map=map, offset=offset or None, length=length)

    def mprotect(self, proc: str, map: str, writable: bool, offset: int = 0,
                 length: int | None = None) -> Self:
        """mprotect."""
        return self.step("mprotect", proc=proc, map=map, writable=writable,
                         offset=offset or None, length=length)

    def touch(self, proc: str, map: str, page: int, count: int = 1, write: bool = True) -> Self:
        """Fault ``count`` pages from ``page`` (MADV_POPULATE_WRITE / _READ)."""
        return self.step("touch", proc=proc, map=map, page=page,
                         count=None if count == 1 else count, write=None if write else False)

    def madvise(self, proc: str, map: str, page: int, advice: str, count: int = 1) -> Self:
        """madvise ``dontneed`` or ``remove``."""
        return self.step("madvise", proc=proc, map=map, page=page, advice=advice,
                         count=None if count == 1 else count)

    def scenario(self) -> Scenario:
        """The scenario as built, unchecked (defaults filled in as the loader fills them)."""
        steps = []
        for index, (op, given, expect) in enumerate(self.steps):
            args = {a.name: a.default for a in OPS[op]}
            args.update(given)
            steps.append(Step(index=index, op=op, args=args, expect=expect))
        return Scenario(steps=tuple(steps), name=self.name, pagesize=self.pagesize,
                        pool_pages=self.pool, pool_overcommit=self.overcommit,
                        kernel=self.kernel, cgroups=self.cgroups)

    def build(self, path: str = "<builder>") -> Scenario:
        """The scenario, checked by the loader (raises `ScenarioError` as a file would)."""
        return load_text(dump_scenario(self.scenario()), path)
