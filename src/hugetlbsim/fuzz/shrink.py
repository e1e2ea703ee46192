"""Delta debugging: shrink a scenario while a predicate ("still diverges") holds.

`shrink` removes chunks of steps (ddmin), then single steps, then makes numbers smaller (the
initial pool, sizes, lengths, counts, offsets, limits) and drops optional arguments, repeating
until nothing more can go.  Every candidate is valid: a removal also drops the later steps
whose names it left dangling (`valid_steps`), so the predicate only ever sees scenarios the
loader accepts.  Candidates stay where the generator goes, so shrinking does not slide from
the bug it shrinks onto an unrelated corner case: page ranges hold at least one page, and a
length or count shrinks to 1, not 0.  Predicate answers are memoised, since a kernel run
costs tens of ms.

`scenario_text` makes the file a shrunk divergence is saved as.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from hugetlbsim.format.loader import dump_scenario, load_text
from hugetlbsim.format.scenario import OPS, Arg, Scenario, Step
from hugetlbsim.fuzz.world import valid_steps

__all__ = ["Predicate", "scenario_text", "shrink"]

Predicate = Callable[[Scenario], bool]


class _Memo:
    """The predicate, memoised on the scenario's content, with a budget of real checks."""

    def __init__(self, predicate: Predicate, budget: int) -> None:
        self.predicate = predicate
        self.budget = budget
        self.seen: dict[tuple[Any, ...], bool] = {}

    def __call__(self, scenario: Scenario) -> bool:
        key = (scenario.pool_pages, scenario.pool_overcommit,
               tuple((s.op, tuple(s.args.items())) for s in scenario.steps))
        if key not in self.seen:
            if self.budget <= 0:
                return False
            self.budget -= 1
            self.seen[key] = self.predicate(scenario)
        return self.seen[key]


def shrink(scenario: Scenario, predicate: Predicate, *, budget: int = 1000) -> Scenario:
    """A smaller scenario on which ``predicate`` still holds (``scenario`` itself must).

    At most ``budget`` new predicate calls are made; the best scenario so far is returned
    when it runs out.
    """
    test = _Memo(predicate, budget)
    best = _with_steps(scenario, scenario.steps)
    if not test(best):
        return scenario
    while True:
        before = best
        best = _ddmin(best, test)
        best = _single_steps(best, test)
        best = _numbers(best, test)
        if best == before or test.budget <= 0:
            return best


def _with_steps(scenario: Scenario, steps: Sequence[Step]) -> Scenario:
    return replace(scenario, steps=valid_steps(steps, nonempty=True))


def _ddmin(scenario: Scenario, test: _Memo) -> Scenario:
    """Remove ever smaller chunks of steps while the predicate holds."""
    n = 2
    while len(scenario.steps) >= 2:
        steps = scenario.steps
        size = -(-len(steps) // n)
        for start in range(0, len(steps), size):
            candidate = _with_steps(scenario, steps[:start] + steps[start + size:])
            if test(candidate):
                scenario, n = candidate, max(n - 1, 2)
                break
        else:
            if n >= len(steps):
                break
            n = min(2 * n, len(steps))
    return scenario


def _single_steps(scenario: Scenario, test: _Memo) -> Scenario:
    """Remove one step at a time, last first, until no single removal keeps the predicate."""
    changed = True
    while changed:
        changed = False
        for i in reversed(range(len(scenario.steps))):
            if i >= len(scenario.steps):
                continue
            steps = scenario.steps
            candidate = _with_steps(scenario, steps[:i] + steps[i + 1:])
            if test(candidate):
                scenario, changed = candidate, True
    return scenario


def _smaller(value: Any, least: int = 0) -> Iterator[Any]:
    """Smaller values to try for an int (least, half, one less) or a ``max`` limit."""
    if value == "max":
        yield least
        return
    if type(value) is int and value > least:
        yield from dict.fromkeys(v for v in (least, max(least, value // 2), value - 1)
                                 if v < value)


_INITIAL = {"proc": "init", "cgroup": "root"}
"""The process and cgroup every scenario starts with: what a name shrinks to."""


def _tries(arg: Arg, value: Any) -> list[Any]:
    """Simpler values for one argument: its default (for values, processes and cgroups; for
    a number only a smaller one), then smaller numbers; a process or cgroup it uses becomes
    init or root.  Never a larger number, so shrinking cannot cycle."""
    kind, default = arg.kind, arg.default
    tries: list[Any] = []
    if (not arg.required and value is not None and value != default
            and kind in ("int", "bool", "limit", "proc", "cgroup")
            and (kind != "int" or default is None or default < value)):
        tries.append(default)
    if kind in _INITIAL and not arg.introduces and value not in (None, _INITIAL[kind]):
        tries.append(_INITIAL[kind])
    if kind in ("int", "limit"):
        least = 1 if arg.name in ("length", "count") else 0
        tries.extend(v for v in _smaller(value, least) if v not in tries)
    return list(dict.fromkeys(tries))


def _numbers(scenario: Scenario, test: _Memo) -> Scenario:
    """Make the initial pool, every number and every optional argument as small as it goes.

    A change is only tried if the changed step stays valid (later steps it invalidates go).
    """
    for field in ("pool_pages", "pool_overcommit"):
        for value in _smaller(getattr(scenario, field)):
            candidate = replace(scenario, **{field: value})
            if test(candidate):
                scenario = candidate
                break
    i = 0
    while i < len(scenario.steps):
        for arg in OPS[scenario.steps[i].op]:
            step = scenario.steps[i]
            for new in _tries(arg, step.args[arg.name]):
                args = {**step.args, arg.name: new}
                steps = list(scenario.steps)
                steps[i] = replace(step, args=args)
                candidate = _with_steps(scenario, steps)
                kept = i < len(candidate.steps) and candidate.steps[i].args == args
                if kept and test(candidate):
                    scenario = candidate
                    break
        i += 1
    return scenario


def scenario_text(scenario: Scenario, comments: Sequence[str] = ()) -> str:
    """The scenario as a YAML file with leading comment lines; checked to load back."""
    text = "".join(f"# {line}\n" for line in comments) + dump_scenario(scenario)
    load_text(text, scenario.name or "<shrunk>")
    return text
