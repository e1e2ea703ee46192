"""Run a scenario on a backend: the trace of results and states, checked against expectations.

`run` applies every step through a backend session, records the result and the state after
it (`trace.StepRecord`), and checks the step's ``expect`` block (`record.check`); the session
is always closed, also when a step raises.  A consumer that only streams the steps out (``run
--json``) passes ``on_step`` and ``keep=False``, so the run holds no step once it is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hugetlbsim.backends.base import Backend
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.record import Failure, check
from hugetlbsim.trace import StepRecord, Trace

__all__ = ["Run", "run"]


@dataclass
class Run(Trace):
    """A trace with the expectations that failed on it."""

    failures: list[Failure] = field(default_factory=list)


def run(scenario: Scenario, backend: Backend, *,
        on_step: Callable[[Run, StepRecord], None] | None = None, keep: bool = True) -> Run:
    """Run every step of ``scenario`` on ``backend``; the session is always closed.

    ``on_step`` sees each record as it is made; with ``keep=False`` the trace's ``steps`` stay
    empty (its ``failures`` are still collected).
    """
    session = backend.open(scenario)
    trace = Run(backend=backend.name, kernel=session.kernel(),
                scenario=scenario.name or Path(scenario.path).stem)
    try:
        for step in scenario.steps:
            result = session.apply(step.op, step.args)
            record = StepRecord(
                index=step.index, op=step.op,
                args={k: v for k, v in step.args.items() if v is not None},
                result=result, state=session.state(), explain=session.explain(), line=step.line)
            if keep:
                trace.steps.append(record)
            if on_step is not None:
                on_step(trace, record)
            trace.failures.extend(check(step, record))
    finally:
        session.close()
    return trace
