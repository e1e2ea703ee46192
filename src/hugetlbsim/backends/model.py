"""The model as a backend: scenario steps applied to a `hugetlbsim.model.system.System`.

The model's invariants are recounted on the schedule of `model.checking` (after every step
while the state is small, at a bounded interval growing with it, and after the last step); a
failed recount replays the run to stop it (an internal error, `InvariantBroken`) naming the
step that broke it.  The kernel line the model follows is the
backend's (``--kernel``) when given, else the scenario's ``kernel:``, else the default line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hugetlbsim.backends.base import ScenarioRefused
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.model.checking import (
    CheckSchedule,
    InvariantBroken,
    Operation,
    find_broken,
    state_size,
)
from hugetlbsim.model.errors import KernelLacks
from hugetlbsim.model.kernels import DEFAULT, Kernel, kernel
from hugetlbsim.model.resv_map import Policy
from hugetlbsim.model.system import System

__all__ = ["ModelBackend", "ModelSession"]


class ModelSession:
    """One scenario on a fresh `System`."""

    def __init__(self, system: System, remake: Callable[[], System] | None = None,
                 last_step: int | None = None) -> None:
        self.system = system
        self._remake = remake
        """A fresh copy of the initial system, for replaying (None: recount every step)."""
        self._schedule = CheckSchedule(last_step)
        self._history: list[Operation] = []

    def apply(self, op: str, args: Mapping[str, Any]) -> str:
        """Run one operation on the model; recount its invariants when due (`checking`)."""
        self._history.append((op, args))
        applied = len(self._history)
        try:
            result = self.system.apply(op, args)
        except Exception as exc:
            if applied - 1 > self._schedule.good:
                # A step that crashes may stand on an invariant an unchecked step broke.
                broken = self._replay(applied - 1)
                if broken is not None:
                    raise broken from exc
            raise
        if self._remake is None or self._schedule.due(applied):
            self._recount(applied)
        return result

    def _recount(self, applied: int) -> None:
        try:
            self.system.check_invariants()
        except AssertionError as err:
            broken = self._replay(applied) if applied - 1 > self._schedule.good else None
            if broken is None:
                op = self._history[-1][0]
                raise InvariantBroken(applied - 1, op, str(err)) from err
            raise broken from err
        self._schedule.passed(applied, state_size(self.system))

    def _replay(self, upto: int) -> InvariantBroken | None:
        """The first of the operations since the last good recount that breaks one."""
        if self._remake is None:
            return None
        return find_broken(self._remake, self._history[:upto], self._schedule.good,
                           type(self.system).check_invariants)

    def state(self) -> dict[str, Any]:
        """The trace state; each file also carries its ``regions``."""
        return self.system.snapshot()

    def explain(self) -> str | None:
        """The model's account of the last operation, if it gave one."""
        return self.system.last_explanation

    def kernel(self) -> str:
        """The kernel line (or release) the model follows in this session."""
        return self.system.hstate.kernel.name

    def close(self) -> None:
        """Nothing to release: the model lives in memory."""


class ModelBackend:
    """Runs scenarios on the model, with a reservation-map policy (see `resv_map.POLICIES`) and
    a kernel line (None: each scenario's own ``kernel:``, else the default line)."""

    name = "model"

    def __init__(self, policy: Policy = "6.18", kernel: str | None = None) -> None:
        self.policy: Policy = policy
        self.kernel: Kernel | None = None if kernel is None else _kernel(kernel)

    def version(self) -> str:
        """The kernel line the model follows when a scenario does not say."""
        return (self.kernel or _kernel(DEFAULT)).name

    def open(self, scenario: Scenario) -> ModelSession:
        """A fresh model system set up as the scenario starts."""
        line = self.kernel or _kernel(scenario.kernel)

        def make() -> System:
            return System(pagesize=scenario.pagesize, pool_pages=scenario.pool_pages,
                          pool_overcommit=scenario.pool_overcommit, policy=self.policy,
                          kernel=line, cgroups=scenario.cgroups,
                          memory_accounting=scenario.memory_accounting)

        try:
            first = make()
        except KernelLacks as exc:  # the kernel line would refuse the setup
            raise ScenarioRefused(str(exc)) from None
        return ModelSession(first, make, len(scenario.steps) - 1)


_kernel = kernel
