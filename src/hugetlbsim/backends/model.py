"""The model as a backend: scenario steps applied to a `hugetlbsim.model.system.System`.

After every step the model's invariants are checked, so a broken invariant stops the run
(an internal error) at the step that broke it.  The kernel line the model follows is the
backend's (``--kernel``) when given, else the scenario's ``kernel:``, else the default line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hugetlbsim.backends.base import BackendUnavailable
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.model.errors import KernelLacks
from hugetlbsim.model.kernels import DEFAULT, Kernel, kernel
from hugetlbsim.model.resv_map import Policy
from hugetlbsim.model.system import System

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
        try:
            system = System(pagesize=scenario.pagesize, pool_pages=scenario.pool_pages,
                            pool_overcommit=scenario.pool_overcommit, policy=self.policy,
                            kernel=line, cgroups=scenario.cgroups,
                            memory_accounting=scenario.memory_accounting)
        except KernelLacks as exc:  # the kernel line would refuse the setup
            raise BackendUnavailable(str(exc)) from None
        return ModelSession(system)


_kernel = kernel
