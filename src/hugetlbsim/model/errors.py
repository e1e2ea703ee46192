"""Kernel-level failures inside the model.

The flows raise `KernelError` where the kernel returns an errno or raises SIGBUS; the
`System` facade turns it into the step's result (``"ENOMEM"``, ``"SIGBUS"``...) and keeps the
sentence saying which check refused, with its numbers, as the explanation.
"""

__all__ = ["KernelError", "KernelLacks", "ScenarioMisuse"]


class KernelError(Exception):
    """A failure the kernel reports to the caller: ``result`` and why, in one sentence."""

    def __init__(self, result: str, why: str) -> None:
        super().__init__(f"{result}: {why}")
        self.result = result
        self.why = why


class ScenarioMisuse(Exception):
    """The model's API was called wrongly (unknown process, mapping...): a caller bug."""


class KernelLacks(Exception):
    """The kernel line the model follows has no such feature, so the kernel would refuse the
    scenario's setup (``memory_accounting`` before 6.7): the scenario cannot run on it."""
