"""The mutation check: with a known accounting bug planted in the model, a short fuzz run
against the live kernel finds a divergence and shrinks it to at most 10 steps, and the shrunk
scenario diverges because of the planted bug (with the bug switched off it agrees).

Needs root, hugetlbfs, the hugetlb cgroup controller and an idle pool; kernel runs are serial.
Seeds and weights are chosen so each bug shows in the first scenarios.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from planting import Switch, off

from hugetlbsim.backends.kernel import machine_unavailable
from hugetlbsim.format.loader import load_text
from hugetlbsim.fuzz.campaign import Options, campaign, check
from hugetlbsim.fuzz.generate import GenOptions


def _pool() -> tuple[int, ...]:
    """HugePages_Total, Free, Rsvd, Surp and nr_overcommit_hugepages."""
    with open("/proc/meminfo") as f:
        meminfo = dict(line.split(":", 1) for line in f)
    with open("/proc/sys/vm/nr_overcommit_hugepages") as f:
        overcommit = int(f.read())
    return (*(int(meminfo["HugePages_" + k]) for k in ("Total", "Free", "Rsvd", "Surp")),
            overcommit)


def _unavailable() -> str | None:
    reason = machine_unavailable()
    if reason is None and _pool() != (0, 0, 0, 0, 0):
        reason = "the huge page pool is not idle (HugePages_Total/Free/Rsvd/Surp, overcommit)"
    return reason


REASON = _unavailable()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

CASES = {
    "punch": (("punch", "mmap"), 2),
    "munmap": (("munmap",), 3),
    "rmdir": (("charged_rmdir",), 3),
}
"""Planted bug → (generator focus, scenarios run from seed 0)."""


@pytest.mark.parametrize("mutation", sorted(CASES))
def test_kernel_fuzzing_finds_a_planted_bug(mutation: str,
                                            planted: Callable[[str], Switch]) -> None:
    focus, count = CASES[mutation]
    switch = planted(mutation)
    options = Options(gen=GenOptions(focus=focus), budget=150, lock_timeout=300.0)
    with ThreadPoolExecutor(max_workers=1) as executor:
        summary = campaign("kernel", executor, seed=0, count=count, batch=1, in_flight=1,
                           options=options)
    assert summary.scenarios == count
    shrunk = [f for f in summary.findings if f.shrunk is not None]
    assert shrunk, [f.signature for f in summary.findings]
    for finding in shrunk:
        assert finding.shrunk is not None and finding.shrunk_steps <= 10, finding
        scenario = load_text(finding.shrunk)
        scenario = replace(scenario, steps=tuple(replace(s, expect=None) for s in scenario.steps))
        assert check(scenario, "kernel", options).found is not None
        assert off(switch, lambda sc=scenario: check(sc, "kernel", options)).found is None
    assert _pool() == (0, 0, 0, 0, 0)
