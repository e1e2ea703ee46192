"""The loader's name rules for the fuzzer, on plain step arguments (no YAML).

`World` follows the names after each step with the same tracker the loader uses
(`hugetlbsim.format.names`), so the generator can only emit steps the loader accepts and the
shrinker can drop the steps a removal left dangling.  It knows nothing of run-time results: a
name whose introducing step fails at run time is still live here, as it is for the loader.  The
generator picks only live names; names an `rmdir`/`umount` left nameable are valid for the
loader (and so here) but never picked.  The tests check `World` against the loader by dumping
and loading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from hugetlbsim.format.names import Life, Names, name_ok
from hugetlbsim.format.scenario import ADVICE, OPS, UNSIGNED_MAX, Scenario, Step

__all__ = ["World", "full_args", "is_valid", "valid_steps"]


class World(Names):
    """The names after the steps applied so far (loader semantics), with views of the live
    names for the generator.

    With ``nonempty`` a page range must hold at least one page (the loader accepts empty
    ranges; the generator never makes them, and the shrinker must not slide into them).
    """

    # -- views of the live names ------------------------------------------------------------

    @property
    def procs(self) -> set[str]:
        return set(self.of_kind("proc"))

    @property
    def maps(self) -> dict[tuple[str, str], int]:
        """(proc, map) → pages of the mapping as created."""
        return {(proc, name): life.length for proc, _sep, name, life in
                ((*key.partition(":"), life) for key, life in self.of_kind("map").items())}

    @property
    def files(self) -> dict[str, Life]:
        """File → its life (``open``: the scenario holds its handle, ``linked``: it has a
        path)."""
        return self.of_kind("file")

    @property
    def mounts(self) -> set[str]:
        return set(self.of_kind("mount"))

    @property
    def shms(self) -> dict[str, int]:
        """shm → pages of the segment."""
        return {name: life.length for name, life in self.of_kind("shm").items()}

    @property
    def cgroups(self) -> set[str]:
        return set(self.of_kind("cgroup"))

    # -- checking and following --------------------------------------------------------------

    def valid(self, op: str, args: Mapping[str, Any]) -> bool:
        """Whether the loader accepts this step here (types, names, page ranges)."""
        spec = OPS.get(op)
        if spec is None or set(args) - {a.name for a in spec}:
            return False
        full = full_args(op, args)
        for arg in spec:
            value = full[arg.name]
            if value is None:
                if arg.required:
                    return False
                continue
            if not _typed(arg.kind, value):
                return False
        given = {a.name for a in spec if full[a.name] is not None and full[a.name] != a.default}
        return self.check(op, full, given) is None

    def apply(self, op: str, args: Mapping[str, Any], line: int = 0) -> None:
        """Follow a valid step (defaults filled in here): the names it introduces and ends."""
        super().apply(op, full_args(op, args), line)


def _typed(kind: str, value: Any) -> bool:
    if kind == "int":
        return type(value) is int and 0 <= value <= UNSIGNED_MAX
    if kind == "bool":
        return type(value) is bool
    if kind == "limit":
        return value == "max" or (type(value) is int and 0 <= value <= UNSIGNED_MAX)
    if kind == "advice":
        return value in ADVICE
    return name_ok(kind, value)


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
