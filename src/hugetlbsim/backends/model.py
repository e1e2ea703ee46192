"""The model as a backend: scenario steps applied to a `hugetlbsim.model.system.System`.

After every step the model's invariants are checked, so a broken invariant stops the run
(an internal error) at the step that broke it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hugetlbsim.format.scenario import Scenario
from hugetlbsim.model.resv_map import Policy
from hugetlbsim.model.system import KERNEL_VERSION, System

__all__ = ["ModelBackend", "ModelSession"]


class ModelSession:
    """One scenario on a fresh `System`."""

    def __init__(self, system: System) -> None:
        self.system = system

    def apply(self, op: str, args: Mapping[str, Any]) -> str:
        """Run one operation on the model, then check its invariants."""
        result = self.system.apply(op, args)
        self.system.check_invariants()
        return result

    def state(self) -> dict[str, Any]:
        """The trace state; each file also carries its ``regions``."""
        return self.system.snapshot()

    def explain(self) -> str | None:
        """The model's account of the last operation, if it gave one."""
        return self.system.last_explanation

    def close(self) -> None:
        """Nothing to release: the model lives in memory."""


class ModelBackend:
    """Runs scenarios on the model, with a reservation-map policy (see `resv_map.POLICIES`)."""

    name = "model"

    def __init__(self, policy: Policy = "6.18") -> None:
        self.policy: Policy = policy

    def version(self) -> str:
        """The kernel semantics the model follows."""
        return KERNEL_VERSION

    def open(self, scenario: Scenario) -> ModelSession:
        """A fresh model system set up as the scenario starts."""
        return ModelSession(System(pagesize=scenario.pagesize, pool_pages=scenario.pool_pages,
                                   pool_overcommit=scenario.pool_overcommit, policy=self.policy))
