"""Capacity planning on the model: does a composition fit, how does it fail, what does it need.

`plan` answers, per kernel line: the outcome with the composition's own pool and limits (the
first failure: which step, which limit with its numbers, as the model's ``explain`` says it,
whether it fails at mmap (ENOMEM, which the program can handle) or at fault (SIGBUS, naming the
process that dies)); the smallest pool for which every step succeeds; and per pod the smallest
limit.  Both are found by binary search over runs of the model, started from the peak demand of
one run with no limits, so a plan usually costs a handful of runs (`Plan.runs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.scenario import UNSIGNED_MAX
from hugetlbsim.workloads.compose import Composition
from hugetlbsim.workloads.expand import Expansion, expand, pod_cgroup
from hugetlbsim.workloads.recipes import Note

__all__ = ["Failure", "KernelPlan", "Plan", "Simulation", "plan", "simulate", "smallest"]

UNBOUNDED = 1 << 40
"""A pool no composition exhausts (the model's pool is counters, so its size costs nothing)."""
FAILURE_STAGE = {"mmap": "mmap", "shmget": "mmap", "touch": "fault", "fallocate": "fallocate",
                 "create": "create", "memfd": "create"}


@dataclass(frozen=True)
class Failure:
    """A step that failed, in the program's terms."""

    index: int
    op: str
    result: str
    note: Note
    explain: str | None

    @property
    def stage(self) -> str:
        """``mmap`` (ENOMEM: the program sees an error), ``fault`` (SIGBUS), ``fallocate``..."""
        return FAILURE_STAGE.get(self.op, self.op)

    def describe(self) -> str:
        """One sentence: which step, where it failed, why, and what the program does."""
        who = self.note.process or self.note.program
        head = (f"step {self.index + 1} ({self.op} by {who}: {self.note.what}) fails at "
                f"{self.stage} ({self.result})")
        why = f": {self.explain}" if self.explain else ""
        then = f" → {self.note.consequence}" if self.note.consequence else ""
        return head + why + then

    def as_dict(self) -> dict[str, Any]:
        """For ``plan --json``."""
        return {"step": self.index + 1, "op": self.op, "result": self.result,
                "stage": self.stage, "program": self.note.program,
                "process": self.note.process, "what": self.note.what,
                "on_fail": self.note.on_fail, "consequence": self.note.consequence,
                "explain": self.explain}


@dataclass
class Simulation:
    """One run of an expansion on the model."""

    expansion: Expansion
    failures: list[Failure] = field(default_factory=list)
    """The first failure of each program (later ones are its consequences)."""
    peak_pool: int = 0
    """The most pages in use plus reserved after any step: the pool this run needed."""
    peak_usage: dict[str, int] = field(default_factory=dict)
    """Per pod: the highest fault (``usage``) and reservation (``rsvd``) counters."""
    peak_rsvd: dict[str, int] = field(default_factory=dict)
    states: list[dict[str, Any]] = field(default_factory=list)
    steps_run: int = 0

    @property
    def fits(self) -> bool:
        """Every step succeeded."""
        return not self.failures


def simulate(expansion: Expansion, line: str | None = None, *, stop_at_failure: bool = False,
             keep_states: bool = False) -> Simulation:
    """Run the expansion's scenario on the model (kernel ``line``), gathering failures and peaks."""
    backend = ModelBackend(kernel=line)
    session = backend.open(expansion.scenario)
    sim = Simulation(expansion)
    failed: set[str] = set()
    cgroups = {pod_cgroup(p): p.name for p in expansion.composition.pods}
    try:
        for step, note in zip(expansion.scenario.steps, expansion.notes, strict=True):
            result = session.apply(step.op, step.args)
            state = session.state()
            sim.steps_run += 1
            if keep_states:
                sim.states.append(state)
            rsvd = state["rsvd"] if state["rsvd"] <= UNSIGNED_MAX >> 1 else 0
            sim.peak_pool = max(sim.peak_pool, state["total"] - state["free"] + rsvd)
            for cg, pod in cgroups.items():
                counters = state["cgroups"].get(cg)
                if counters:
                    sim.peak_usage[pod] = max(sim.peak_usage.get(pod, 0), counters["usage"])
                    sim.peak_rsvd[pod] = max(sim.peak_rsvd.get(pod, 0), counters["rsvd"])
            if result != "ok" and note.program not in failed:
                failed.add(note.program)
                sim.failures.append(Failure(step.index, step.op, result, note,
                                            session.explain()))
                if stop_at_failure:
                    break
    finally:
        session.close()
    return sim


def smallest(ok: Callable[[int], bool], hi: int, guess: int | None = None) -> int:
    """The smallest x in [0, hi] with ok(x), given ok(hi) and ok monotone; tries ``guess``
    and ``guess - 1`` first, then bisects."""
    lo = -1
    if guess is not None and 0 <= guess <= hi:
        if ok(guess):
            hi = guess
            if guess == 0 or not ok(guess - 1):
                return guess
            hi = guess - 1
        else:
            lo = guess
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


@dataclass
class KernelPlan:
    """The answers for one kernel line."""

    line: str
    given: Simulation
    min_pool: int | None = None
    """The smallest pool (pages) for which every step succeeds; None if none does."""
    min_limits: dict[str, int] = field(default_factory=dict)
    """Per pod, the smallest limit (pages) for which every step succeeds."""
    verified: bool = False
    """The pool and limits together were run and every step succeeded."""
    impossible: list[Failure] = field(default_factory=list)
    """Failures that no pool or limit removes."""
    runs: int = 0


@dataclass
class Plan:
    """A composition's plan, per kernel line."""

    composition: Composition
    kernels: list[KernelPlan]
    seconds: float = 0.0

    @property
    def runs(self) -> int:
        """Model runs made."""
        return sum(k.runs for k in self.kernels)

    def as_dict(self) -> dict[str, Any]:
        """For ``plan --json``."""
        comp = self.composition
        return {"workload": comp.name, "path": comp.path, "pool": comp.pool,
                "pagesize": comp.pagesize, "seconds": round(self.seconds, 3),
                "kernels": [{
                    "kernel": k.line, "fits": k.given.fits,
                    "failures": [f.as_dict() for f in k.given.failures],
                    "min_pool": k.min_pool, "min_limits": k.min_limits,
                    "verified": k.verified,
                    "impossible": [f.as_dict() for f in k.impossible], "runs": k.runs}
                    for k in self.kernels]}


def plan(comp: Composition, lines: Iterable[str | None] = (None,)) -> Plan:
    """Plan ``comp`` on each kernel line (None: the composition's own, else the default)."""
    began = time.perf_counter()
    kernels = [_plan_line(comp, line) for line in lines]
    return Plan(comp, kernels, time.perf_counter() - began)


def _plan_line(comp: Composition, line: str | None) -> KernelPlan:
    runs = 0
    memo: dict[tuple[int, tuple[tuple[str, int | None], ...]], Simulation] = {}

    def run(pool: int, limits: Mapping[str, int | None], *, full: bool = False) -> Simulation:
        nonlocal runs
        key = (pool, tuple(sorted(limits.items())))
        if key not in memo or full:
            runs += 1
            memo[key] = simulate(expand(comp, pool=pool, limits=limits, kernel=line), line,
                                 stop_at_failure=not full)
        return memo[key]

    given_exp = expand(comp, kernel=line)
    given = simulate(given_exp, line)
    runs += 1
    name = line or comp.kernel or ModelBackend().version()
    result = KernelPlan(name, given)
    free = dict.fromkeys((p.name for p in comp.pods), None)
    # a composition that fits followed the same steps as one with no limits: same peaks
    probe = given if given.fits else run(UNBOUNDED, free)
    if not probe.fits:
        result.impossible = probe.failures
        result.runs = runs
        return result
    result.min_pool = smallest(lambda pool: run(pool, free).fits, UNBOUNDED, probe.peak_pool)
    for pod in comp.pods:
        need = probe.peak_usage.get(pod.name, 0)
        if pod.runtime == "runc":
            need = max(need, probe.peak_rsvd.get(pod.name, 0))

        def fits_with(limit: int, pod_name: str = pod.name) -> bool:
            return run(UNBOUNDED, {**free, pod_name: limit}).fits

        hi = max(need, 1)
        while not fits_with(hi) and hi < UNBOUNDED:
            hi *= 2
        result.min_limits[pod.name] = smallest(fits_with, hi, need)
    both = run(result.min_pool, {p.name: result.min_limits[p.name] for p in comp.pods})
    result.verified = both.fits
    result.runs = runs
    return result
