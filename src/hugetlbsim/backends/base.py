"""The interface every backend speaks, so the runner, `diff` and the fuzzer never know which
one they drive.

A backend opens a `Session` for one scenario (the system starts as the scenario says: pool of
``pool_pages`` with ``pool_overcommit``, one cgroup ``root``, one process ``init``).  Each step
is applied with `Session.apply`, which returns the step's result (``"ok"``, an errno name,
``"SIGBUS"`` or ``"SIGSEGV"``); `Session.state` returns the trace ``state`` object of
scenario-format.md (every counter, for every cgroup, mount and file that exists).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from hugetlbsim.format.scenario import Scenario

__all__ = ["Backend", "BackendFailed", "BackendUnavailable", "Batching", "ScenarioRefused",
           "Session", "prepare"]


class BackendUnavailable(Exception):
    """The backend cannot run here (not root, no hugetlbfs, pool busy...): exit status 3."""


class ScenarioRefused(BackendUnavailable):
    """The backend runs here, but not this scenario (a 1G page size or ``memory_accounting``
    on the host, a kernel line without a feature the scenario needs): a command with many
    files reports it and goes on with the others."""


class BackendFailed(RuntimeError):
    """A real kernel could not run a scenario to its end (a guest hung, crashed or never came
    up): not a bug of ours, exit status 3."""


class Session(Protocol):
    """One scenario being run on one backend."""

    def apply(self, op: str, args: Mapping[str, Any]) -> str:
        """Run one operation; return its result."""
        ...

    def state(self) -> dict[str, Any]:
        """Every counter after the last operation, as the trace's ``state`` object."""
        ...

    def explain(self) -> str | None:
        """Why the last operation failed, in one sentence, if the backend knows."""
        ...

    def kernel(self) -> str:
        """The trace's ``kernel``: the line the model follows, or the kernel's ``uname -r``."""
        ...

    def close(self) -> None:
        """Release everything the session created (idempotent)."""
        ...


class Backend(Protocol):
    """A way to run scenarios: ``name`` is ``"model"`` or ``"kernel"``."""

    name: str

    def version(self) -> str:
        """The trace's ``kernel`` value: the semantics the model follows, or ``uname -r``."""
        ...

    def open(self, scenario: Scenario) -> Session:
        """Set up the scenario's initial system (may raise `BackendUnavailable`)."""
        ...


@runtime_checkable
class Batching(Protocol):
    """A backend that runs a whole batch of scenarios at once (a guest boot is paid once)."""

    def prepare(self, scenarios: Sequence[Scenario]) -> object:
        """Run these scenarios now; `Backend.open` then replays each one."""
        ...


def prepare(backend: Backend, scenarios: Sequence[Scenario]) -> None:
    """Let a batching backend run ``scenarios`` together before they are opened one by one."""
    if isinstance(backend, Batching):
        backend.prepare(scenarios)
