"""When a run recounts the model's invariants, and how a failed recount finds its step.

`check_invariants` is a full, independent recount: its cost grows with the whole state, not
with what a step changed.  A run therefore recounts at a bounded interval that grows with the
state (`CheckSchedule`: after each of a run's first `DENSE_STEPS` operations, and so on every
step of the examples, regressions and fuzz campaigns, which are shorter; then after every step
while the state is small and at most every ``size / WORK_PER_STEP`` steps once it is larger,
so the recount costs O(WORK_PER_STEP) per step amortised) and after the last step.  The
model is deterministic, so when a recount fails (or a step raises), `find_broken` replays the
operations from the start with a recount after every step from the last good one and reports
the first step that breaks (`InvariantBroken.step`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hugetlbsim.model.system import System

__all__ = ["DENSE_STEPS", "WORK_PER_STEP", "CheckSchedule", "InvariantBroken", "find_broken",
           "state_size"]

DENSE_STEPS = 64
"""Operations recounted one by one at the start of every run, whatever the state's size: more
than any example, regression or fuzz scenario has, so those are checked after every step."""
WORK_PER_STEP = 8
"""State items a recount may visit per step, amortised, once a run is past `DENSE_STEPS`
(a recount costs about 0.5 us per item: at 32, it was over a third of a small step)."""

Operation = tuple[str, Mapping[str, Any]]


class InvariantBroken(AssertionError):
    """A recount failed; ``step`` is the 0-based operation after which it first fails."""

    def __init__(self, step: int, op: str, what: str) -> None:
        super().__init__(f"step {step} ({op}): {what}")
        self.step = step
        self.op = op


def state_size(system: System) -> int:
    """About what a full recount visits: pages in use, regions, VMAs, inodes, cgroups."""
    h = system.hstate
    size = 1 + (h.nr_huge_pages - h.free_huge_pages) + len(system.cgroups) + len(system.mounts)
    for inode in system.inodes:
        size += 1 + len(inode.resv_map) + len(inode.i_mmap)
    for task in system.procs.values():
        size += 1 + len(task.maps)
    return size


class CheckSchedule:
    """Which steps of a run end with a recount (deterministic: it depends on the state only)."""

    def __init__(self, last_step: int | None = None) -> None:
        self.last_step = last_step
        """0-based index of the scenario's last step (always recounted), if known."""
        self.good = 0
        """Operations known good: the recount after operation ``good - 1`` passed."""
        self.interval = 1

    def due(self, applied: int) -> bool:
        """Whether to recount after ``applied`` operations."""
        return (applied <= DENSE_STEPS or applied - self.good >= self.interval
                or (self.last_step is not None and applied == self.last_step + 1))

    def passed(self, applied: int, size: int) -> None:
        """A recount after ``applied`` operations passed on a state of ``size`` items."""
        self.good = applied
        self.interval = max(1, size // WORK_PER_STEP)


def find_broken(make: Callable[[], System], history: Sequence[Operation], good: int,
                check: Callable[[System], None]) -> InvariantBroken | None:
    """Replay ``history`` on ``make()``; recount after each operation from ``good`` on.

    Returns the first failure, or None if every recount passes (the failure the caller saw
    was not a broken invariant).  Exceptions of the replayed operations propagate.
    """
    system = make()
    for n, (op, args) in enumerate(history):
        try:
            system.apply(op, args)
        except Exception:
            if n < good:
                raise
            return None
        if n >= good:
            try:
                check(system)
            except AssertionError as err:
                return InvariantBroken(n, op, str(err))
    return None
