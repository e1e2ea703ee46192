"""A composition as an ordinary scenario: the steps of every program, with a note per step.

Order: the node's setup (hugetlbfs mounts, one cgroup per pod with its limits), then each
program's ``start`` and ``use`` steps in file order, then (``stop: true``) every program's
``stop`` steps, last started first stopped.  `expand` can override the pool and the pods'
limits, which is how `plan` searches; the scenario it returns is what ``hugetlbsim workload
--emit`` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hugetlbsim.format.loader import dump_scenario
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.workloads.builder import ScenarioBuilder
from hugetlbsim.workloads.compose import Composition, Pod
from hugetlbsim.workloads.recipes import PROGRAMS, Note, Phases, Target
from hugetlbsim.workloads.units import PAGESIZE_BYTES, pages

__all__ = ["UNLIMITED", "Expansion", "emit", "expand", "pod_cgroup", "pod_limit"]

UNLIMITED = None
"""A pod limit override meaning no limit (``max``)."""
_PAGESIZE_NAMES = {"2M": "2MiB", "1G": "1GiB"}


@dataclass(frozen=True)
class Expansion:
    """The scenario and, index for index, what each of its steps stands for."""

    composition: Composition
    scenario: Scenario
    notes: tuple[Note, ...]
    limits: dict[str, int | None]
    """Each pod's limit in pages as the scenario sets it (None: unlimited)."""


def pod_cgroup(pod: Pod) -> str:
    """The scenario cgroup of a pod."""
    return f"pod-{pod.name}"


def pod_limit(comp: Composition, pod: Pod) -> int:
    """The pod's limit in pages for the composition's page size (0 when not requested)."""
    return pages(pod.limit_bytes(comp.pagesize), comp.pagesize)


def expand(comp: Composition, *, pool: int | None = None,
           limits: Mapping[str, int | None] | None = None, kernel: str | None = None) -> Expansion:
    """The scenario of ``comp``; ``pool`` (pages) and ``limits`` (pod → pages, None for
    unlimited) override the composition's, ``kernel`` its kernel line."""
    b = ScenarioBuilder(comp.name, pool=comp.pool if pool is None else pool,
                        overcommit=comp.overcommit, pagesize=comp.pagesize,
                        kernel=kernel or comp.kernel, cgroups=comp.cgroups)
    notes: list[Note] = []
    given = dict(limits or {})
    set_limits: dict[str, int | None] = {}

    def add(op: str, args: Mapping[str, Any], note: Note) -> None:
        b.step(op, **args)
        notes.append(note)

    mounts: dict[str, bool] = {}
    targets = []
    for pod, prog in comp.all_programs():
        mount = "hp" if pod is None else f"hp-{pod.name}"
        cgroup = "root" if pod is None else pod_cgroup(pod)
        recipe = PROGRAMS[prog.kind]
        if recipe.uses_mount(prog.params):
            mounts[mount] = True
        targets.append((prog, Target(prog.name, cgroup, mount, comp.pagesize,
                                     PAGESIZE_BYTES[comp.pagesize])))
    for mount in mounts:
        add("mount", {"name": mount},
            Note("node", "setup", f"hugetlbfs mounted for the programs ({mount})"))
    for pod in comp.pods:
        limit = given[pod.name] if pod.name in given else pod_limit(comp, pod)
        set_limits[pod.name] = limit
        shown = "max" if limit is None else limit
        args: dict[str, Any] = {"name": pod_cgroup(pod), "limit": shown}
        what = f"the pod's hugetlb cgroup: {_PAGESIZE_NAMES[comp.pagesize]} max = {shown}"
        if pod.runtime == "runc":
            args["rsvd_limit"] = shown
            what += f", rsvd.max = {shown} (runc)"
        else:
            what += " (crun: no rsvd.max)"
        add("cgroup", args, Note(pod.name, "setup", what))
    phases: list[Phases] = [PROGRAMS[prog.kind].expand(t, prog.params) for prog, t in targets]
    for ph in phases:
        for op, args2, note in (*ph.start, *ph.use):
            add(op, args2, note)
    if comp.stop:
        for ph in reversed(phases):
            for op, args2, note in ph.stop:
                add(op, args2, note)
    return Expansion(comp, b.scenario(), tuple(notes), set_limits)


def emit(expansion: Expansion) -> str:
    """The scenario as YAML, each step preceded by a comment saying what it stands for."""
    text = dump_scenario(expansion.scenario)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("steps:")) + 1
    out = [f"# expanded from {expansion.composition.path} by hugetlbsim workload --emit",
           *lines[:start]]
    notes = iter(expansion.notes)
    for line in lines[start:]:
        if line.startswith("  - "):
            note = next(notes)
            out.append(f"  # {note.program} {note.phase}: {note.what}")
        out.append(line)
    return "\n".join(out) + "\n"
